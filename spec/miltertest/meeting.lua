-- A meeting request: the milter negotiates what it needs, adds the marker and replaces the body.
-- Globals: PORT, MSG, NR (yes|no: no-reply steps negotiated), and the expected body as packets
-- EXP1 … EXPn (N = n), cut at the milter's
-- milter_body_chunk (1000: miltertest crashes on replies over 1024 bytes at end of message).
dofile(SCRIPTS .. "/common.lua")
local function check(ok, what) if not ok then fail("negotiated: " .. what) end end

local conn = open_milter()
if mt.conninfo(conn, "client.example", "192.0.2.7") ~= nil then fail("conninfo") end

-- what was negotiated (mt.negotiate happened implicitly with 6 / 0x1ff / 0x1fffff)
check(mt.test_action(conn, SMFIF_ADDHDRS), "ADDHDRS")
check(mt.test_action(conn, SMFIF_CHGBODY), "CHGBODY")
check(mt.test_action(conn, SMFIF_CHGHDRS), "CHGHDRS")
check(not mt.test_action(conn, SMFIF_ADDRCPT), "no ADDRCPT")
-- NR=yes: the milter was started with --milter-no-reply yes (the default on a Unix socket)
local nr = (NR == "yes")
check(mt.test_option(conn, SMFIP_NR_CONN) == nr, "NR_CONN")
check(mt.test_option(conn, SMFIP_NR_MAIL) == nr, "NR_MAIL")
check(mt.test_option(conn, SMFIP_NR_RCPT) == nr, "NR_RCPT")
check(mt.test_option(conn, SMFIP_NR_HDR) == nr, "NR_HDR")
check(mt.test_option(conn, SMFIP_NODATA) == nr, "NODATA")
check(mt.test_option(conn, SMFIP_NOHELO), "NOHELO")
check(mt.test_option(conn, SMFIP_HDR_LEADSPC), "HDR_LEADSPC")
check(not mt.test_option(conn, SMFIP_NR_EOH), "EOH is answered")
check(not mt.test_option(conn, SMFIP_NR_BODY), "BODY is answered")

mt.macro(conn, SMFIC_MAIL, "i", "MTQ1", "{auth_authen}", "ada")
local body, eoh = send_head(conn, "<ada@example.org>", { "<bob@example.net>" }, MSG)
if eoh ~= SMFIR_CONTINUE then fail("end of headers: expected CONTINUE, got " .. string.char(eoh)) end
if mt.bodystring(conn, body) ~= nil then fail("bodystring") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then fail("body: expected CONTINUE") end
mt.macro(conn, string.byte("E"), "i", "MTQ1")
if mt.eom(conn) ~= nil then fail("eom") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then fail("end of message: expected CONTINUE, got " .. string.char(mt.getreply(conn))) end

if not mt.eom_check(conn, MT_HDRADD, "X-Calendar-Link", " added") then fail("no X-Calendar-Link header added") end
if not mt.eom_check(conn, MT_BODYCHANGE) then fail("no body replacement") end
for i = 1, tonumber(N) do
  if not mt.eom_check(conn, MT_BODYCHANGE, _G["EXP" .. i]) then fail("body packet " .. i .. " differs from the after-queue rewrite") end
end
if mt.eom_check(conn, MT_HDRCHANGE) or mt.eom_check(conn, MT_HDRDELETE) or mt.eom_check(conn, MT_HDRINSERT) then
  fail("an edit that was not asked for")
end
mt.disconnect(conn)
mt.echo("meeting: ok")
