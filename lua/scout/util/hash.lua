-- Small, fast, dependency-free 32-bit hashes and a seedable PRNG for selectors and routing. They must give the
-- same answer in the agent and in every nginx worker on every host (so no ngx.crc32_short, no process-seeded
-- hashing, no endianness dependence), and `str` runs once per chash pick, so it reads the string four bytes at a
-- time through an FFI pointer (the JIT turns that into plain loads; string.byte per byte costs ~3x more) and keeps
-- all arithmetic in Lua numbers (exact below 2^51, so no cdata boxing even in the interpreter). Results are
-- unsigned integers in [0, 2^32) held in Lua numbers. None of this is cryptographic.

local bit = require "bit"
local ffi = require "ffi"

local band = bit.band
local bor = bit.bor
local bxor = bit.bxor
local bnot = bit.bnot
local rshift = bit.rshift
local lshift = bit.lshift
local tobit = bit.tobit
local byte = string.byte
local type = type
local floor = math.floor
local error = error
local cast = ffi.cast

local M = {}

local U32 = 4294967296
local u32p = ffi.typeof("const uint32_t *")
local u8p = ffi.typeof("const uint8_t *")
local LE = ffi.abi("le")

-- CRC-32 (IEEE 802.3, reflected 0xEDB88320), table at index byte+1 so it stays in the array part.
local CRC = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if band(c, 1) ~= 0 then
      c = bxor(rshift(c, 1), 0xEDB88320)
    else
      c = rshift(c, 1)
    end
  end
  CRC[i + 1] = c
end

-- crc32(s) -> [0, 2^32); crc32("123456789") == 0xCBF43926. Standard, but a byte at a time: not for hot paths.
function M.crc32(s)
  local c = bnot(0)
  for i = 1, #s do
    c = bxor(rshift(c, 8), CRC[band(bxor(c, byte(s, i)), 0xff) + 1])
  end
  return bnot(c) % U32
end

-- a * b mod 2^32 for 32-bit a, b, exact in doubles: every partial product stays below 2^51, where tobit is exact.
local function mul32(a, b)
  local lo = band(b, 0xffff)
  local hi = rshift(b, 16)
  return tobit(a * lo + tobit(a * hi) * 65536)
end
M.mul32 = mul32

-- murmur3's 32-bit finaliser on an int32: a bijection with full avalanche, so the low bits (which `% size` uses)
-- depend on every input bit.
local function fmix(x)
  x = bxor(x, rshift(x, 16))
  x = mul32(x, 0x85EBCA6B)
  x = bxor(x, rshift(x, 13))
  x = mul32(x, 0xC2B2AE35)
  return bxor(x, rshift(x, 16))
end

-- Multiplier for the word loop: odd, well spread bits, and small enough (< 2^19) that h * MULT + word stays
-- below 2^51 and tobit() reduces it mod 2^32 exactly.
local MULT = 0x3A8F1

-- str(s[, seed]) -> [0, 2^32). Polynomial over the string's little-endian 32-bit words (a last partial word
-- zero-padded), seeded with the length, then fmix. Straight-line code up to 40 bytes and for the tail: a loop
-- here, called from a caller's hot loop, made LuaJIT's trace tree fragile (the side trace at the inner loop's
-- exit must link back into the caller's loop; when it is formed in another context it gets blacklisted into a
-- stub back to the interpreter), and picks ran 3-5x slower depending on luck. Different seeds give unrelated
-- hashes of the same key (routing splits use one seed, chash another, so the two do not correlate).
local function str_portable(s, seed)
  local n = #s
  local h = tobit((seed or 0) + n)
  local i = 1
  for _ = 1, rshift(n, 2) do
    local a, b, c, d = byte(s, i, i + 3)
    h = tobit(h * MULT + (a + b * 256 + c * 65536 + d * 16777216))
    i = i + 4
  end
  if i <= n then
    local a, b, c = byte(s, i, n)
    h = tobit(h * MULT + (a + (b or 0) * 256 + (c or 0) * 65536))
  end
  return fmix(h) % U32
end
M._str_portable = str_portable  -- the big-endian path; specs check it agrees with the FFI one

local function str(s, seed)
  if not LE then
    return str_portable(s, seed)
  end
  local n = #s
  local h = tobit((seed or 0) + n)
  local nw = rshift(n, 2)
  local p = cast(u32p, s)
  -- keys up to 40 bytes (ids, addresses, UUIDs) without a loop; see the note above
  if nw > 0 then h = tobit(h * MULT + p[0]) end
  if nw > 1 then h = tobit(h * MULT + p[1]) end
  if nw > 2 then h = tobit(h * MULT + p[2]) end
  if nw > 3 then h = tobit(h * MULT + p[3]) end
  if nw > 4 then h = tobit(h * MULT + p[4]) end
  if nw > 5 then h = tobit(h * MULT + p[5]) end
  if nw > 6 then h = tobit(h * MULT + p[6]) end
  if nw > 7 then h = tobit(h * MULT + p[7]) end
  if nw > 8 then h = tobit(h * MULT + p[8]) end
  if nw > 9 then h = tobit(h * MULT + p[9]) end
  for k = 10, nw - 1 do
    h = tobit(h * MULT + p[k])
  end
  local t = n - nw * 4
  if t > 0 then
    local q = cast(u8p, s)
    local b = nw * 4
    local w = q[b]
    if t > 1 then
      w = w + q[b + 1] * 256
      if t > 2 then
        w = w + q[b + 2] * 65536
      end
    end
    h = tobit(h * MULT + w)
  end
  return fmix(h) % U32
end
M.str = str

-- Hash a string or a number key. Numbers hash by value without building a string (42 and "42" differ).
function M.key(k, seed)
  if type(k) == "number" then
    if k ~= k then k = 0 end
    local lo = tobit(floor(k) % U32)
    local hi = tobit(floor(k / U32) % U32)
    return fmix(bxor(lo, fmix(bxor(hi, tobit(seed or 0))))) % U32
  end
  return str(k, seed)
end

-- rng(seed) -> function() returning a float in [0, 1). Marsaglia xorshift128 with its state in upvalues: cheap,
-- JIT-friendly, independent of math.random's global state, and identical on every platform for a given seed.
function M.rng(seed)
  if type(seed) ~= "number" then
    error("seed must be a number", 2)
  end
  local x = fmix(tobit(seed % U32))
  local y = fmix(tobit(x + 0x9E3779B9))
  local z = fmix(tobit(y + 0x9E3779B9))
  local w = fmix(tobit(z + 0x9E3779B9))
  if bor(x, y, z, w) == 0 then w = 1 end
  return function()
    local t = bxor(x, lshift(x, 11))
    x = y
    y = z
    z = w
    w = bxor(w, rshift(w, 19), t, rshift(t, 8))
    return (w % U32) / U32
  end
end

return M
