-- scout.util.utf8: text from registries and hooks made safe for JSON. cjson copies bytes as they are, so a reason
-- quoting a znode's bytes would make invalid JSON; a malformed sequence becomes U+FFFD instead. Endpoints need none
-- of this: they crossed the C boundary, which refuses invalid UTF-8.

local byte, sub, find = string.byte, string.sub, string.find
local concat = table.concat

local M = {}

local SECOND = { [0xE0] = { 0xA0, 0xBF }, [0xED] = { 0x80, 0x9F }, [0xF0] = { 0x90, 0xBF }, [0xF4] = { 0x80, 0x8F } }

function M.clean(s)
  if not find(s, "[\128-\255]") then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = byte(s, i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c <= 0xDF) and 2 or (c >= 0xE0 and c <= 0xEF) and 3
                or (c >= 0xF0 and c <= 0xF4) and 4 or 0
    local ok = len > 0 and i + len - 1 <= n
    for k = 1, ok and len - 1 or 0 do
      local b, lo, hi = byte(s, i + k), 0x80, 0xBF
      if k == 1 and SECOND[c] then lo, hi = SECOND[c][1], SECOND[c][2] end
      if b < lo or b > hi then ok = false; break end
    end
    if ok then
      out[#out + 1] = sub(s, i, i + len - 1)
      i = i + len
    else
      out[#out + 1] = "\239\191\189"
      i = i + 1
    end
  end
  return concat(out)
end

return M
