import type { FastifyError, FastifyRequest } from 'fastify';
import { CsvError, parse } from 'csv-parse/sync';
import { TextDecoder } from 'node:util';
import { parse as parseContentType } from 'content-type';
import { DomainError, InvalidFieldError } from '../../../errors.js';
import { MAX_BULK_ENTRIES, VipEntryInputSchema } from '../../../schemas/vip-list.js';

/** The columns a CSV of VIP entries may have: the JSON entry's fields, by the same names. */
const COLUMNS = Object.keys(VipEntryInputSchema.properties);
const COLUMNS_SAID = `${COLUMNS[0]} (required), ${COLUMNS.slice(1).join(', ')}`;

/**
 * A CSV body's text, in the charset its Content-Type names, else UTF-8. Excel's "CSV (Comma
 * delimited)" is Windows-1252, not UTF-8: read as UTF-8, a name `José` became `Jos�` and was
 * stored so. A body that is not the UTF-8 it is read as is a 400 naming the line.
 */
export function csvText(body: Buffer, contentType: string | undefined): string {
  let charset: string | undefined;
  let decoder: TextDecoder;
  try {
    charset = parseContentType(contentType ?? 'text/csv').parameters.charset;
    decoder = new TextDecoder(charset ?? 'utf-8', { fatal: true });
  } catch {
    throw new DomainError(
      415,
      `the body's charset ${JSON.stringify(String(charset ?? contentType).slice(0, 40))} (in its Content-Type) is unknown or unreadable: send UTF-8, or name the charset the export is in, e.g. Content-Type: text/csv; charset=windows-1252`,
    );
  }
  try {
    return decoder.decode(body);
  } catch {
    const text = body.toString(decoder.encoding === 'utf-8' ? 'utf8' : 'latin1');
    const at = decoder.encoding === 'utf-8' ? text.indexOf('\uFFFD') : -1;
    const where = at < 0 ? 'the body' : `line ${text.slice(0, at).split('\n').length}`;
    throw new InvalidFieldError(
      'body',
      `${where} is not ${decoder.encoding}, the charset ${charset ? 'its Content-Type names' : 'read when the Content-Type names none'}: save the export as UTF-8 (Excel: "CSV UTF-8"), or name the charset it is in, e.g. Content-Type: text/csv; charset=windows-1252`,
    );
  }
}

/** The line each entry of a CSV body starts on, by the request: errors name the line, not the index. */
const linesOf = new WeakMap<FastifyRequest, number[]>();

/**
 * A CSV body (a CRM's export) as the array of entries JSON would send: a header row naming the
 * columns as the JSON fields (any order; `number` required), then one entry a row. An empty cell is
 * a field left out (cleared, as in JSON); blank lines and a byte-order mark (Excel's) are skipped.
 */
export function parseCsvEntries(request: FastifyRequest, text: string): Array<Record<string, string>> {
  let rows: Array<{ record: string[]; info: { lines: number } }>;
  try {
    // Excel saves "CSV" with the locale's list separator, `;` in much of Europe: read as commas, its
    // header row was one unknown column, or a note with a comma made a row longer than the header
    // (`Invalid Record Length`). Said as what it is; the delimiter is not guessed.
    const [first] = parse(text, { bom: true, info: true, skip_empty_lines: true, to: 1 }) as unknown as typeof rows;
    if (first?.record.length === 1 && first.record[0]!.includes(';')) {
      throw new InvalidFieldError(
        'body',
        `line ${first.info.lines}: the fields are separated by semicolons (;), not commas: save the file as comma-separated (Excel: "CSV UTF-8 (Comma delimited)"; where Excel's list separator is ';', set it to ',' in the region settings first), or replace the ';' between fields with ','`,
      );
    }
    // Parsed no further than one row past the limit: 16 MiB of short rows (1.5 million) parsed
    // whole held the event loop, and with it every callback, for seconds.
    rows = parse(text, { bom: true, info: true, skip_empty_lines: true, to: MAX_BULK_ENTRIES + 2 }) as unknown as typeof rows;
  } catch (e) {
    if (e instanceof CsvError) throw new InvalidFieldError('body', `is not valid CSV: ${e.message}`);
    throw e;
  }
  const [header, ...records] = rows;
  if (!header) return [];
  if (records.length > MAX_BULK_ENTRIES) {
    throw new InvalidFieldError(
      'body',
      `has more than ${MAX_BULK_ENTRIES} rows after the header row, the most one request takes: split the export over several requests (without mode=replace, which would remove what the others sent)`,
    );
  }
  const names = header.record.map((name) => name.trim());
  const unknown = names.find((name) => !COLUMNS.includes(name));
  if (unknown !== undefined) {
    throw new InvalidFieldError('body', `line ${header.info.lines}: unknown column '${unknown}': the header row names the columns, of ${COLUMNS_SAID}`);
  }
  const twice = names.find((name, i) => names.indexOf(name) !== i);
  if (twice !== undefined) throw new InvalidFieldError('body', `line ${header.info.lines}: column '${twice}' is named twice; name it once`);
  if (!names.includes('number')) {
    throw new InvalidFieldError(
      'body',
      `line ${header.info.lines}: the header row has no 'number' column: the first row names the columns, of ${COLUMNS_SAID}`,
    );
  }
  // csv-parse counts a record's lines to its end; a quoted cell may span lines (a note).
  linesOf.set(
    request,
    records.map(({ record, info }) => info.lines - record.reduce((n, cell) => n + (cell.match(/\n/g)?.length ?? 0), 0)),
  );
  return records.map(({ record }) => Object.fromEntries(names.flatMap((name, i) => (record[i] ? [[name, record[i]]] : []))));
}

/**
 * An error about a CSV body's entry (`body/3/tier: …`, from the schema or the number check) said
 * by its line and column (`body: line 5, column tier: …`); other errors as they are.
 */
export function onCsvLine(request: FastifyRequest, err: FastifyError): FastifyError {
  const lines = linesOf.get(request);
  if (!lines) return err;
  err.message = err.message.replace(/^body\/(\d+)(?:\/([^:/]+))?:/, (whole, index: string, column?: string) => {
    const line = lines[Number(index)];
    if (line === undefined) return whole;
    return `body: line ${line}${column ? `, column ${column}` : ''}:`;
  });
  return err;
}
