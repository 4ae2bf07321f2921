/**
 * A callback's POST body as text, read in the charset its Content-Type names. Exotel sends UTF-8
 * and names none; a hand-made request (a script, a tool whose forms default to ISO-8859-1) may send
 * another, whose bytes read as UTF-8 became U+FFFD: a caller's name `José` stored as `Jos�`.
 *
 * A form's `%XX` escapes are bytes in that charset: they are decoded with it and the form handed on
 * in UTF-8, as src/exotel/params.ts reads it. A body that claims UTF-8 (or no charset) but is not
 * keeps U+FFFD for what is not, and says so (`warning`, in the CDR's decision.warnings).
 */
import { isUtf8 } from 'node:buffer';
import { TextDecoder } from 'node:util';
import { parse } from 'content-type';

export interface BodyText {
  text: string;
  /** Set when the body was not the UTF-8 it was read as. */
  warning: string | null;
}

/** A charset no decoder here knows: refused (415), with its CDR. */
export class UnknownCharsetError extends Error {
  readonly statusCode = 415;
  constructor(charset: string) {
    super(
      `the body's charset ${JSON.stringify(charset.slice(0, 40))} (in its Content-Type) is unknown; send UTF-8 (as Exotel does), or name the charset the body is in, e.g. ISO-8859-1`,
    );
  }
}

const NOT_UTF8 =
  'the body is not UTF-8, as its Content-Type says (or implies, naming no charset): what is not was stored as U+FFFD; send UTF-8 (as Exotel does), or name the charset, e.g. Content-Type: application/x-www-form-urlencoded; charset=ISO-8859-1';

/** A form's bytes with `+` and `%XX` decoded (a latin1 string holds one byte per character). */
const formBytes = (latin1: string) =>
  Buffer.from(
    latin1.replace(/\+/g, ' ').replace(/%([0-9a-f]{2})/gi, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16))),
    'latin1',
  );

/** Throws UnknownCharsetError. */
export function bodyText(body: Buffer, contentType: string | undefined): BodyText {
  const header = contentType ?? '';
  const json = /json/i.test(header);
  const charset = /charset/i.test(header) ? parse(header).parameters.charset : undefined;
  let decoder: TextDecoder | null = null;
  if (charset !== undefined) {
    try {
      decoder = new TextDecoder(charset);
    } catch {
      throw new UnknownCharsetError(charset);
    }
  }
  if (decoder === null || decoder.encoding === 'utf-8') {
    const text = body.toString('utf8');
    // Only a body with a byte or an escape past ASCII can be anything but UTF-8.
    const maybe = text.includes('\uFFFD') || (!json && /%[89a-f][0-9a-f]/i.test(text));
    const valid = !maybe || isUtf8(json ? body : formBytes(body.toString('latin1')));
    return { text, warning: valid ? null : NOT_UTF8 };
  }
  // JSON, and a form in UTF-16 (its `&` and `=` are two bytes each), are text in the charset throughout.
  if (json || decoder.encoding.startsWith('utf-16')) return { text: decoder.decode(body), warning: null };
  const text = body
    .toString('latin1')
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const utf8 = (part: string) => encodeURIComponent(decoder.decode(formBytes(part)));
      return eq < 0 ? utf8(pair) : `${utf8(pair.slice(0, eq))}=${utf8(pair.slice(eq + 1))}`;
    })
    .join('&');
  return { text, warning: null };
}
