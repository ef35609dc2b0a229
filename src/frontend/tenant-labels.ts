// Tenant labels a client brings: "user?key=value,key2=value2" in the user name (the name before
// "?" is the user Ferry authenticates), or the connection attribute `ferry_labels` in the same
// "key=value,..." form. Routing reads them to pick servers whose labels match.

export const LABELS_ATTRIBUTE = "ferry_labels";

export function parseLabels(text: string): Record<string, string> | null {
  const out: Record<string, string> = {};
  for (const part of text.split(",")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq <= 0) return null;
    const key = part.slice(0, eq).trim();
    if (!/^[A-Za-z0-9_.-]+$/.test(key)) return null;
    out[key] = part.slice(eq + 1).trim();
  }
  return out;
}

/** Splits "app?tenant=a" into the user name and its labels; null labels when the suffix is malformed. */
export function splitUserLabels(name: string): { user: string; labels: Record<string, string> | null } {
  const q = name.indexOf("?");
  if (q < 0) return { user: name, labels: {} };
  return { user: name.slice(0, q), labels: parseLabels(name.slice(q + 1)) };
}

/** Labels from the user name and the connection attributes (the user name wins on conflicts). */
export function clientLabels(name: string, attributes: Map<string, string>): { user: string; labels: Record<string, string> | null } {
  const fromName = splitUserLabels(name);
  const attr = attributes.get(LABELS_ATTRIBUTE);
  if (attr === undefined || fromName.labels === null) return fromName;
  const fromAttr = parseLabels(attr);
  if (fromAttr === null) return { user: fromName.user, labels: null };
  return { user: fromName.user, labels: { ...fromAttr, ...fromName.labels } };
}
