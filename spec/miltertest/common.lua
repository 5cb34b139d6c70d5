-- Shared by the miltertest scripts: connect, and send one .eml file as the MTA would.
-- Globals from `miltertest -D`: PORT (the milter's loopback port), MSG (path of the message).
-- Header values keep their leading space (the milter negotiates SMFIP_HDR_LEADSPC); folded lines are
-- joined with LF, as Postfix sends them; the body goes as one chunk with CRLF line ends.

-- miltertest 2.11 exits 1 without printing a script error, so say it first
function fail(msg)
  mt.echo("FAIL: " .. msg)
  error(msg, 2)
end

function open_milter()
  local conn = mt.connect("inet:" .. PORT .. "@127.0.0.1", 40, 0.25)
  if conn == nil then fail("cannot connect to the milter on port " .. PORT) end
  return conn
end

function read_message(path)
  local f = io.open(path, "rb")
  if f == nil then fail("cannot read " .. path) end
  local raw = f:read("a")
  f:close()
  local at = string.find(raw, "\r\n\r\n", 1, true)
  local head = string.sub(raw, 1, at - 1)
  local body = string.sub(raw, at + 4)
  local fields = {}
  for line in string.gmatch(head .. "\r\n", "(.-)\r\n") do
    if string.match(line, "^[ \t]") then
      fields[#fields].value = fields[#fields].value .. "\n" .. line
    else
      local name, value = string.match(line, "^([^:]+):(.*)$")
      fields[#fields + 1] = { name = name, value = value }
    end
  end
  return fields, body
end

-- One message up to end of headers; returns the body still to send and the reply at end of headers.
function send_head(conn, from, rcpts, path)
  if mt.mailfrom(conn, from) ~= nil then fail("mailfrom") end
  for _, r in ipairs(rcpts) do
    if mt.rcptto(conn, r) ~= nil then fail("rcptto " .. r) end
  end
  local fields, body = read_message(path)
  for _, h in ipairs(fields) do
    if mt.header(conn, h.name, h.value) ~= nil then fail("header " .. h.name) end
  end
  if mt.eoh(conn) ~= nil then fail("eoh") end
  return body, mt.getreply(conn)
end
