-- ABORT in the middle of a meeting request, then the same connection carries a full one: the first
-- leaves no trace, the second is edited. Globals: PORT, MSG, and N / EXP1 … EXPn as in meeting.lua.
dofile(SCRIPTS .. "/common.lua")

local conn = open_milter()
if mt.conninfo(conn, "client.example", "192.0.2.7") ~= nil then fail("conninfo") end
-- aborted after the body, before end of message
local body = send_head(conn, "<mallory@example.org>", { "<eve@example.net>" }, MSG)
if mt.bodystring(conn, body) ~= nil then fail("bodystring") end
if mt.abort(conn) ~= nil then fail("abort 1") end
-- aborted right after MAIL
if mt.mailfrom(conn, "<mallory@example.org>") ~= nil then fail("mailfrom") end
if mt.abort(conn) ~= nil then fail("abort 2") end
-- the real one
local body2, eoh = send_head(conn, "<ada@example.org>", { "<bob@example.net>" }, MSG)
if eoh ~= SMFIR_CONTINUE then fail("end of headers") end
if mt.bodystring(conn, body2) ~= nil then fail("bodystring 2") end
if mt.eom(conn) ~= nil then fail("eom") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then fail("end of message: expected CONTINUE") end
if not mt.eom_check(conn, MT_HDRADD, "X-Calendar-Link") then fail("no marker") end
for i = 1, tonumber(N) do
  if not mt.eom_check(conn, MT_BODYCHANGE, _G["EXP" .. i]) then fail("body packet " .. i .. " differs") end
end
mt.disconnect(conn)
mt.echo("abort: ok")
