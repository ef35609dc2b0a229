// Server addresses. Kept apart from the schema so that the data plane (every worker process) does
// not load the validation library, which it never uses: the primary validates, workers receive
// the validated file.

/** A server's address: "host:port", or the path of its Unix socket. */
export function serverAddress(host: string, port: number): string {
  return isSocketPath(host) ? host : `${host}:${port}`;
}

/** A server `host` starting with "/" is the path of the server's Unix socket (port unused). */
export const isSocketPath = (host: string): boolean => host.startsWith("/");
