// A module-loading hook (node:module register): appends every URL Node loads to LOADS_FILE.
import { appendFileSync } from 'node:fs';

export async function load(url, context, next) {
  if (process.env.LOADS_FILE) appendFileSync(process.env.LOADS_FILE, url + '\n');
  return next(url, context);
}
