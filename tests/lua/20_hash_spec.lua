-- scout.util.hash: known vectors, agreement of the FFI and portable string paths, spread, and the seedable RNG.

local hash = require "scout.util.hash"
local H = require "29_select_helpers"

describe("scout.util.hash", function()
  it("crc32 matches the standard check value", function()
    assert.equal(0xCBF43926, hash.crc32("123456789"))
    assert.equal(0, hash.crc32(""))
  end)

  it("mul32 is multiplication mod 2^32", function()
    assert.equal(bit.tobit(0x12345678 * 3), hash.mul32(0x12345678, 3))
    -- 0xFFFFFFFF * 0xFFFFFFFF = 1 mod 2^32
    assert.equal(1, hash.mul32(bit.tobit(0xFFFFFFFF), 0xFFFFFFFF))
    assert.equal(bit.tobit(0x85EBCA6B * 0x10001 % 2 ^ 32), hash.mul32(0x85EBCA6B, 0x10001))
  end)

  it("str gives unsigned 32-bit values, stable across calls, seed-dependent", function()
    for _, s in ipairs({ "", "a", "abc", "abcd", "abcde", "user:1234567", string.rep("x", 1000) }) do
      local h = hash.str(s)
      assert.is_true(h >= 0 and h < 2 ^ 32 and h % 1 == 0)
      assert.equal(h, hash.str(s))
      assert.equal(h, hash.str(s, 0))
      assert.are_not.equal(h, hash.str(s, 12345))
    end
  end)

  it("the FFI word path and the portable byte path agree", function()
    for len = 0, 40 do
      local s = {}
      for i = 1, len do s[i] = string.char((i * 37 + len * 11) % 256) end
      s = table.concat(s)
      assert.equal(hash._str_portable(s, 7), hash.str(s, 7))
      assert.equal(hash._str_portable(s), hash.str(s))
    end
  end)

  it("spreads sequential keys evenly over buckets", function()
    local counts, probs = {}, {}
    for b = 0, 99 do probs[b] = 0.01 end
    local total = 100000
    for i = 1, total do
      local b = hash.str("k" .. i) % 100
      counts[b] = (counts[b] or 0) + 1
    end
    assert.is_true(H.chi2(counts, probs, total) < H.chi2_crit(99))
  end)

  it("key hashes numbers by value and strings like str", function()
    assert.equal(hash.str("42"), hash.key("42"))
    assert.equal(hash.key(42), hash.key(42.0))
    assert.are_not.equal(hash.key(42), hash.key(43))
    assert.are_not.equal(hash.key(1), hash.key(1 + 2 ^ 32))
    local h = hash.key(-5)
    assert.is_true(h >= 0 and h < 2 ^ 32)
  end)

  it("rng is deterministic per seed, in [0,1), and roughly uniform", function()
    local a, b, c = hash.rng(1), hash.rng(1), hash.rng(2)
    local same, counts, probs = true, {}, {}
    for k = 0, 9 do probs[k] = 0.1 end
    local total = 50000
    local differs = false
    for _ = 1, total do
      local x = a()
      if x ~= b() then same = false end
      if x ~= c() then differs = true end
      assert.is_true(x >= 0 and x < 1)
      local k = math.floor(x * 10)
      counts[k] = (counts[k] or 0) + 1
    end
    assert.is_true(same)
    assert.is_true(differs)
    assert.is_true(H.chi2(counts, probs, total) < H.chi2_crit(9))
    assert.has_error(function() hash.rng("x") end, "seed must be a number")
  end)
end)
