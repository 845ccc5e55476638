import { InputError } from '../errors.js';

/** One CSV record with the 1-based line it starts on. */
export interface CsvRecord {
  readonly line: number;
  readonly fields: string[];
}

/**
 * RFC 4180 CSV: comma-separated, fields may be double-quoted (with "" for a quote and line
 * breaks inside). Blank lines and lines starting with # are comments, not rows.
 */
export function parseCsv(text: string, file: string): CsvRecord[] {
  const out: CsvRecord[] = [];
  let line = 1;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const start = line;
    if (text[i] === '\n' || (text[i] === '\r' && text[i + 1] === '\n')) {
      i += text[i] === '\r' ? 2 : 1;
      line++;
      continue;
    }
    if (text[i] === '#') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    const fields: string[] = [];
    let field = '';
    let quoted = false;
    for (;;) {
      if (i >= n) {
        if (quoted) throw new InputError(`${file}:${start}: a quoted field is not closed`);
        fields.push(field);
        break;
      }
      const ch = text[i];
      if (quoted) {
        if (ch === '"' && text[i + 1] === '"') {
          field += '"';
          i += 2;
        } else if (ch === '"') {
          quoted = false;
          i++;
        } else {
          if (ch === '\n') line++;
          field += ch;
          i++;
        }
      } else if (ch === '"' && field.trim() === '') {
        quoted = true;
        field = '';
        i++;
      } else if (ch === ',') {
        fields.push(field);
        field = '';
        i++;
      } else if (ch === '\n' || (ch === '\r' && text[i + 1] === '\n')) {
        fields.push(field);
        i += ch === '\r' ? 2 : 1;
        line++;
        break;
      } else {
        field += ch;
        i++;
      }
    }
    out.push({ line: start, fields: fields.map((f) => f.trim()) });
  }
  return out;
}
