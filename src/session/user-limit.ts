// users.max_connections: a user's client connections, one count across Ferry's processes.

import { ER_TOO_MANY_USER_CONNECTIONS } from "../protocol/constants.js";
import { FerryError } from "../protocol/errors.js";

/** The key a user's connections are counted under (lib/slots.ts). */
export const userSlot = (user: string): string => `user ${user}`;

/** The refusal of a login (or COM_CHANGE_USER) of a user that holds `max` connections already. */
export function userLimitError(user: string, max: number): FerryError {
  return new FerryError(ER_TOO_MANY_USER_CONNECTIONS, "42000", `refused login of user '${user}': it already has ${max} connections, its users.max_connections`, "client");
}
