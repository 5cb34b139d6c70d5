-- Mail that is no calendar mail: a plain message is accepted at the end of headers, a multipart one
-- passes end of message with CONTINUE and no edit at all. Globals: PORT, MSG (plain), MIXED (multipart).
dofile(SCRIPTS .. "/common.lua")

local conn = open_milter()
if mt.conninfo(conn, "client.example", "192.0.2.7") ~= nil then fail("conninfo") end
local _, eoh = send_head(conn, "<ada@example.org>", { "<bob@example.net>", "<carol@example.net>" }, MSG)
if eoh ~= SMFIR_ACCEPT then fail("plain text: expected ACCEPT at end of headers, got " .. string.char(eoh)) end
if mt.abort(conn) ~= nil then fail("abort") end

local body, eoh2 = send_head(conn, "<ada@example.org>", { "<bob@example.net>" }, MIXED)
if eoh2 ~= SMFIR_CONTINUE then fail("multipart: expected CONTINUE at end of headers") end
if mt.bodystring(conn, body) ~= nil then fail("bodystring") end
if mt.eom(conn) ~= nil then fail("eom") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then fail("multipart: expected CONTINUE at end of message") end
if mt.eom_check(conn, MT_BODYCHANGE) or mt.eom_check(conn, MT_HDRADD) or mt.eom_check(conn, MT_HDRCHANGE) then
  fail("a message without calendar data was edited")
end
mt.disconnect(conn)
mt.echo("noncalendar: ok")
