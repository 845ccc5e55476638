/**
 * The one domain error class. Anything the user typed that we cannot accept becomes an
 * InputError with a one-line message; the CLI prints it and exits 2. Everything else is
 * a bug and propagates.
 */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}

/** An invalid layout: a tensor with two dimensions on one axis, or an indivisible split. */
export class LayoutError extends InputError {
  constructor(message: string) {
    super(message);
    this.name = 'LayoutError';
  }
}

export function check(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new InputError(typeof message === 'string' ? message : message());
}
