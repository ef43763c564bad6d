// Node.js mysql2 through the MySQL proxy: COM_CHANGE_USER (changeUser).
//   node changeuser.js PROXY_PORT PINNED_COMMAND DENIALS
// Session state made as user app (a temporary table, a user variable, a SET,
// the schema) is gone after changeUser to user other; the proxy reports no
// pin any more (PINNED_COMMAND prints the host's `pinned source` answer); a
// wrong password in a changeUser fails with one of DENIALS (comma-separated:
// 1045 from the proxy; with caching_sha2 and no TLS, mysql2 itself refuses to
// fetch the RSA key for the full authentication the proxy then asks for).
const mysql = require('mysql2/promise');
const { execSync } = require('child_process');

(async () => {
  const port = Number(process.argv[2]);
  const pinned = () => execSync(process.argv[3]).toString().trim();
  const c = await mysql.createConnection({ host: '127.0.0.1', port, user: 'app', password: 'apppw', database: 'shop' });
  await c.query("CREATE TEMPORARY TABLE cu_tmp (id int)");
  await c.query("SET @cu_var = 7, SESSION sql_mode = 'ANSI_QUOTES'");
  await c.query('BEGIN');
  await c.query("INSERT INTO ps_probe (v) VALUES ('rolled-back')");
  const before = pinned();
  if (!before.includes('temporary table cu_tmp')) throw new Error(`not pinned before: ${before}`);
  await c.changeUser({ user: 'other', password: 'otherpw', database: 'shop2' });
  const [[r]] = await c.query('SELECT DATABASE() AS db, @cu_var AS v, @@sql_mode AS m, @@in_transaction AS t');
  let tmp = 'still there';
  try { await c.query('SELECT * FROM shop.cu_tmp'); } catch (e) { tmp = e.code; }
  const after = pinned();
  const [[k]] = await c.query("SELECT COUNT(*) AS k FROM shop.ps_probe WHERE v = 'rolled-back'");
  if (r.db !== 'shop2' || r.v !== null || r.m === 'ANSI_QUOTES' || r.t !== 0 || tmp !== 'ER_NO_SUCH_TABLE' ||
      after !== 'pinned 0' || k.k !== 0)
    throw new Error(`state after changeUser: ${JSON.stringify({ r, tmp, after, k })}`);
  let denied = 'no error';
  try {
    await c.changeUser({ user: 'other', password: 'wrong' });
    await c.query('SELECT 1');
  } catch (e) { denied = String(e.errno || e.code); }
  if (!process.argv[4].split(',').includes(denied)) throw new Error(`a wrong password in changeUser: ${denied}`);
  c.destroy();
  console.log(`node ok: changeUser app -> other: schema ${r.db}, user variable ${r.v}, sql_mode '${r.m}', ` +
              `open transaction rolled back, temporary table gone (${tmp}); ${before} -> ${after}; a wrong password: ${denied}`);
})().catch((e) => {
  console.log(`FAIL node changeUser: ${e.message}`);
  process.exit(1);
});
