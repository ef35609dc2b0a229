// Connection churn: clients that connect, run one query and disconnect, as applications without
// a connection pool of their own do (a PHP request, a cron job, a serverless function). For
// `seconds`, `loops` clients do that back to back through `port`; returns how many connections
// they made. What it measures through a proxy is the proxy's login work on both sides: the
// client's login to it and its own login to the server, plus Ferry's session-tracking setup.

import mysql from "mysql2/promise";

export async function connectChurn(port: number, loops: number, seconds: number): Promise<number> {
  const until = performance.now() + seconds * 1000;
  let connects = 0;
  const loop = async (): Promise<void> => {
    while (performance.now() < until) {
      const c = await mysql.createConnection({ host: "127.0.0.1", port, user: "bench", password: "bench", database: "sbtest" });
      await c.query("SELECT 1");
      await c.end();
      connects++;
    }
  };
  await Promise.all(Array.from({ length: loops }, loop));
  return connects;
}
