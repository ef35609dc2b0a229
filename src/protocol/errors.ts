// The one error type Ferry raises for things a client or backend did wrong or that Ferry refused.
// The session turns it into an ERR packet; a backend's own ERR packet is forwarded as it is.

export type ErrorOrigin = "client" | "backend" | "ferry";

export class FerryError extends Error {
  override name = "FerryError";
  readonly errno: number;
  readonly sqlState: string;
  readonly origin: ErrorOrigin;

  constructor(errno: number, sqlState: string, message: string, origin: ErrorOrigin = "ferry") {
    super(message.startsWith("ferry:") ? message : `ferry: ${message}`);
    this.errno = errno;
    this.sqlState = sqlState;
    this.origin = origin;
  }
}
