/**
 * Typed errors with stable codes. Callers branch on `code`, never on message text.
 */
export class RampartError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A configuration (resource, mesh settings, request file) that cannot be used. */
export class ConfigError extends RampartError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** A request description (the `rampart check` input) that is malformed. */
export class RequestError extends RampartError {
  readonly path: string;
  constructor(path: string, message: string) {
    super('ERR_REQUEST_INVALID', `${path}: ${message}`);
    this.path = path;
  }
}

/** Traffic capture that cannot be set up or used: no rule backend, no original-destination support, a bad option. */
export class CaptureError extends RampartError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
