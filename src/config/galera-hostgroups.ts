// Galera single-writer hostgroups (ProxySQL's mysql_galera_hostgroups). Every node of a Galera
// cluster can write, but writes to the same rows through two nodes conflict at certification,
// and one of them fails at commit ("Deadlock found"). So a set sends writes to `max_writers`
// nodes (one, by default) and uses the others for reads and as standbys.
//
// The set's nodes are the servers configured (or discovered) in any of its hostgroups, each
// counted once by address. A node can write when it is ONLINE (configured so, and not shunned
// by the monitor: not Synced, desynced, unreachable …), its weight is above 0, and the monitor
// has not seen read_only = ON. The writers are chosen among those:
// - they keep the role while they can write, so writing does not flip between nodes on every
//   recovery (with `failback`, the preferred nodes take it back as soon as they can write);
// - free places go to the preferred nodes: highest weight first, then the order of the config.
// Writers go to the writer hostgroup (and the reader hostgroup with writer_is_also_reader);
// other nodes to the reader hostgroup (and the backup writer hostgroup when they can write). A
// node that is not ONLINE stays in its configured hostgroup with its status, where it serves
// nothing and the monitor goes on checking it.
//
// The previous writers come from the control plane (TopologyOverlay.galeraWriters), which keeps
// what the last snapshot chose; a placement is a pure function of file and overlay, so every
// worker process builds the same one.

import { serverAddress } from "./address.js";
import type { GaleraHostgroupEntry, SourcedServerEntry } from "./schema.js";

export interface GaleraPlacement {
  /** each node with a hostgroup it serves in */
  placements: { entry: SourcedServerEntry; hostgroup: number }[];
  /** addresses of the writers, in the order they took the role */
  writers: string[];
}

export interface NodeFindings {
  /** the monitor's reason for shunning the node, if it does */
  shunned(address: string): string | undefined;
  /** read_only as the monitor last saw it (undefined: not seen yet) */
  readOnly(address: string): boolean | undefined;
}

/** The hostgroups of a set. */
export function galeraHostgroups(set: GaleraHostgroupEntry): number[] {
  return [set.writer_hostgroup, set.reader_hostgroup, ...(set.backup_writer_hostgroup === undefined ? [] : [set.backup_writer_hostgroup])];
}

export function placeGaleraSet(set: GaleraHostgroupEntry, entries: readonly SourcedServerEntry[], findings: NodeFindings, previousWriters: readonly string[]): GaleraPlacement {
  const inSet = new Set(galeraHostgroups(set));
  const nodes = new Map<string, SourcedServerEntry>();
  for (const e of entries) {
    const address = serverAddress(e.host, e.port);
    if (inSet.has(e.hostgroup) && !nodes.has(address)) nodes.set(address, e);
  }
  const online = (a: string, e: SourcedServerEntry): boolean => e.status === "ONLINE" && findings.shunned(a) === undefined;
  const canWrite = (a: string, e: SourcedServerEntry): boolean => online(a, e) && e.weight > 0 && findings.readOnly(a) !== true;

  const order = [...nodes.keys()];
  const preferred = order.filter((a) => canWrite(a, nodes.get(a)!))
    .sort((a, b) => nodes.get(b)!.weight - nodes.get(a)!.weight || order.indexOf(a) - order.indexOf(b));
  const writers = set.failback ? [] : previousWriters.filter((a) => preferred.includes(a)).slice(0, set.max_writers);
  for (const a of preferred) {
    if (writers.length >= set.max_writers) break;
    if (!writers.includes(a)) writers.push(a);
  }

  const placements: GaleraPlacement["placements"] = [];
  for (const [address, entry] of nodes) {
    const put = (hostgroup: number): void => void placements.push({ entry, hostgroup });
    if (!online(address, entry)) put(entry.hostgroup);
    else if (writers.includes(address)) {
      put(set.writer_hostgroup);
      if (set.writer_is_also_reader) put(set.reader_hostgroup);
    } else {
      put(set.reader_hostgroup);
      if (set.backup_writer_hostgroup !== undefined && canWrite(address, entry)) put(set.backup_writer_hostgroup);
    }
  }
  return { placements, writers };
}
