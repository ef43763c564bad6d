// Node.js mysql2 through the MySQL proxy: prepared statements (binary
// protocol) keep working after the session moves to the other server.
//   node prepared.js PROXY_PORT FLIP_COMMAND
const mysql = require('mysql2/promise');
const { execSync } = require('child_process');

(async () => {
  const port = Number(process.argv[2]);
  const c = await mysql.createConnection({ host: '127.0.0.1', port, user: 'app', password: 'apppw', database: 'shop' });
  const [a] = await c.execute('SELECT @@port AS port, ? + 1 AS n, ? AS s', [41, 'x']);
  await c.execute('INSERT INTO ps_probe (v) VALUES (?)', ['before']);
  execSync(process.argv[3]);
  const [b] = await c.execute('SELECT @@port AS port, ? + 1 AS n, ? AS s', [99, 'y']);
  await c.execute('INSERT INTO ps_probe (v) VALUES (?)', ['after']);
  const [rows] = await c.execute('SELECT COUNT(*) AS k FROM ps_probe WHERE v = ?', ['after']);
  await c.end();
  if (a[0].port === b[0].port) throw new Error(`the session did not move (${a[0].port})`);
  if (a[0].n !== 42 || b[0].n !== 100 || b[0].s !== 'y' || rows[0].k !== 1)
    throw new Error(`wrong results ${JSON.stringify([a, b, rows])}`);
  console.log(`node ok: prepared statements on ${a[0].port} then ${b[0].port} after the move`);
})().catch((e) => {
  console.log(`FAIL node: ${e.message}`);
  process.exit(1);
});
