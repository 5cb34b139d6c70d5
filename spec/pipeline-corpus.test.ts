// Every email of the real-world corpus through the real filter (listener → pipeline → relay) to a
// real sink, checked against EXPECTED.tsv and an independent parser (mailparser):
//   U → the next hop gets the exact bytes;  F → one marker header, every original header, calendar
//   part, TNEF and attachment identical, exactly one footer link in each chosen text/HTML body with
//   the original text intact around it; a second pass changes nothing.
// Without ../shared/corpus the test says so and checks nothing else.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { simpleParser, type ParsedMail } from 'mailparser';
import { CORPUS_DIR, CORPUS_SKIP_MESSAGE, corpusFile, expectedRows } from './helpers/corpus.js';
import { startInProcFilter, type InProcFilter } from './helpers/filter-inproc.js';
import { startSink, type Sink } from './helpers/sink.js';
import { transact } from './helpers/smtp-dialog.js';

const WEB = 'cal.example.org';
const MARKER = 'X-Calendar-Link: added\r\n';

/** What Postfix hands a content filter: CRLF line ends. */
const toWire = (b: Buffer) => Buffer.from(b.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');

const count = (hay: string, needle: string) => hay.split(needle).length - 1;

async function relay(filter: InProcFilter, sink: Sink, data: Buffer): Promise<Buffer> {
  const before = sink.messages.length;
  const r = await transact(filter.port, { from: 'alice@example.org', to: ['bob@example.org'], data, mailParams: 'BODY=8BITMIME' });
  assert.match(r.final[0]!, /^250 /, `relay answered ${r.final[0]}`);
  assert.equal(sink.messages.length, before + 1, 'exactly one transaction at the next hop');
  return sink.messages[before]!.raw;
}

function headerLines(m: ParsedMail): string[] {
  return m.headerLines.map((h) => h.line);
}

describe('corpus through the filter', { skip: CORPUS_DIR === null ? CORPUS_SKIP_MESSAGE : false }, () => {
  let sink: Sink;
  let filter: InProcFilter;
  before(async () => {
    sink = await startSink();
    filter = await startInProcFilter({ next_hop: `smtp://127.0.0.1:${sink.port}`, web_server: WEB });
  });
  after(async () => {
    await filter.close();
    await sink.close();
  });

  for (const row of expectedRows()) {
    test(`${row.path} → ${row.expected} (${row.kind})`, async () => {
      const input = toWire(corpusFile(row.path)!);
      const output = await relay(filter, sink, input);
      const withCrlf = input.subarray(-2).toString() === '\r\n' ? input : Buffer.concat([input, Buffer.from('\r\n')]);

      if (row.expected === 'U') {
        assert.ok(output.equals(withCrlf), 'byte-identical at the next hop');
        return;
      }

      assert.ok(output.subarray(0, MARKER.length).toString() === MARKER, 'one marker header, first');
      assert.equal(count(output.toString('latin1'), 'X-Calendar-Link:'), 1 + count(input.toString('latin1'), 'X-Calendar-Link:'));
      const [a, b] = await Promise.all([simpleParser(withCrlf), simpleParser(output.subarray(MARKER.length))]);

      assert.deepEqual(headerLines(b), headerLines(a), 'every original header unchanged');
      assert.equal(b.attachments.length, a.attachments.length, 'same attachments');
      a.attachments.forEach((att, i) => {
        assert.equal(b.attachments[i]!.contentType, att.contentType);
        assert.ok(b.attachments[i]!.content.equals(att.content), `attachment ${i} (${att.contentType}) identical`);
      });

      const link = `https://${WEB}/`;
      const parts: string[] = [];
      if (b.text !== undefined && b.text !== a.text) {
        parts.push('text');
        assert.equal(count(b.text, link), 1 + count(a.text ?? '', link), 'one link in the text body');
        // the footer block removed, the text is the original (whitespace aside: a blank line is added before it)
        const stripped = b.text.replace(/-- \n[^\n]*\nView it and your calendar on the web: [^\n]*\n?/, '');
        assert.equal(stripped.replace(/\s+/g, ' ').trim(), (a.text ?? '').replace(/\s+/g, ' ').trim(), 'original text intact around the footer');
      }
      if (typeof b.html === 'string' && b.html !== a.html) {
        parts.push('html');
        assert.equal(count(b.html, `href="${link}`), 1 + count(typeof a.html === 'string' ? a.html : '', `href="${link}`), 'one link in the HTML body');
        const footerStart = b.html.lastIndexOf('<div data-calendar-link-footer');
        assert.ok(footerStart >= 0);
        const footerEnd = b.html.indexOf('</div>', footerStart) + '</div>'.length;
        const stripped = b.html.slice(0, footerStart) + b.html.slice(footerEnd);
        assert.equal(stripped.replace(/\s+/g, ' ').trim(), (a.html as string).replace(/\s+/g, ' ').trim(), 'original HTML intact around the footer');
      }
      assert.ok(parts.length > 0 || b.text?.includes(link) === true, 'a footer in at least one body part');

      const again = await relay(filter, sink, output);
      assert.ok(again.equals(output), 'a second pass changes nothing');
    });
  }
});

test('corpus presence', () => {
  if (CORPUS_DIR === null) {
    // A user's fresh clone has no ../shared: say so plainly; nothing else is claimed.
    console.log(CORPUS_SKIP_MESSAGE);
    return;
  }
  assert.ok(expectedRows().length >= 40, 'EXPECTED.tsv lists the corpus emails');
});
