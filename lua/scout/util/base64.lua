-- Base64 (RFC 4648) in pure Lua, for Nerve's path-encoded child names (Ruby's Base64.urlsafe_encode64, padded).
-- Decoding is strict in what matters (alphabet, padding only at the end, no impossible lengths) and lenient where
-- Ruby is (missing padding is fine), so a mangled name is `nil, "bad base64"`, never half-decoded bytes.
-- Arithmetic only (no bit library) so it runs on any Lua 5.1 as well as LuaJIT.

local type = type
local byte = string.byte
local char = string.char
local sub = string.sub
local find = string.find
local floor = math.floor
local concat = table.concat

local M = {}

local STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function tables(alpha)
  local enc, dec = {}, {}
  for i = 1, 64 do
    local c = sub(alpha, i, i)
    enc[i - 1] = c
    dec[byte(c)] = i - 1
  end
  return enc, dec
end

local STD_ENC, STD_DEC = tables(STD)
local URL_ENC, URL_DEC = tables(URL)

local function encode(s, enc, pad)
  local out = {}
  local n = #s
  local i = 1
  while i + 2 <= n do
    local a, b, c = byte(s, i, i + 2)
    local v = a * 65536 + b * 256 + c
    out[#out + 1] = enc[floor(v / 262144)] .. enc[floor(v / 4096) % 64] .. enc[floor(v / 64) % 64] .. enc[v % 64]
    i = i + 3
  end
  local rest = n - i + 1
  if rest == 1 then
    local v = byte(s, i) * 65536
    out[#out + 1] = enc[floor(v / 262144)] .. enc[floor(v / 4096) % 64] .. (pad and "==" or "")
  elseif rest == 2 then
    local a, b = byte(s, i, i + 1)
    local v = a * 65536 + b * 256
    out[#out + 1] = enc[floor(v / 262144)] .. enc[floor(v / 4096) % 64] .. enc[floor(v / 64) % 64]
      .. (pad and "=" or "")
  end
  return concat(out)
end

local function decode(s, dec)
  if type(s) ~= "string" then return nil, "bad base64" end
  -- strip padding: at most two "=", only at the end
  local body = s
  local p = find(s, "=", 1, true)
  if p then
    body = sub(s, 1, p - 1)
    local padding = sub(s, p)
    if padding ~= "=" and padding ~= "==" then return nil, "bad base64" end
    if (#body + #padding) % 4 ~= 0 then return nil, "bad base64" end
  end
  local n = #body
  if n % 4 == 1 then return nil, "bad base64" end
  local out = {}
  local i = 1
  while i + 3 <= n do
    local a, b, c, d = dec[byte(body, i)], dec[byte(body, i + 1)], dec[byte(body, i + 2)], dec[byte(body, i + 3)]
    if not (a and b and c and d) then return nil, "bad base64" end
    local v = a * 262144 + b * 4096 + c * 64 + d
    out[#out + 1] = char(floor(v / 65536), floor(v / 256) % 256, v % 256)
    i = i + 4
  end
  local rest = n - i + 1
  if rest == 2 then
    local a, b = dec[byte(body, i)], dec[byte(body, i + 1)]
    if not (a and b) then return nil, "bad base64" end
    out[#out + 1] = char(floor((a * 262144 + b * 4096) / 65536))
  elseif rest == 3 then
    local a, b, c = dec[byte(body, i)], dec[byte(body, i + 1)], dec[byte(body, i + 2)]
    if not (a and b and c) then return nil, "bad base64" end
    local v = a * 262144 + b * 4096 + c * 64
    out[#out + 1] = char(floor(v / 65536), floor(v / 256) % 256)
  end
  return concat(out)
end

function M.encode(s) return encode(s, STD_ENC, true) end
function M.decode(s) return decode(s, STD_DEC) end
-- url-safe alphabet; padded like Ruby's urlsafe_encode64 unless nopad
function M.encode_url(s, nopad) return encode(s, URL_ENC, not nopad) end
function M.decode_url(s) return decode(s, URL_DEC) end

return M
