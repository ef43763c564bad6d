// Node.js mysql2 through the MySQL proxy during a write switch's drain:
// connection A holds a transaction, connection B (idle, already on the
// source) prepares two statements and pings; they must be answered while the
// switch still waits for A, and run on the target after the switch. A
// pymysql connection C (a child process) changes its schema (COM_INIT_DB)
// and pings during the pause too, and is in that schema on the target after.
// Connection D (mysql2) and a pymysql connection E are new: they connect
// during the pause, as a pool that reconnects does, with no server session
// yet. Their connect-time queries (SELECT @@version_comment, SET NAMES, SET
// autocommit / sql_mode; pymysql's sql_mode, init_command and its COMMIT),
// D's prepare and ping are answered while the switch still waits; their
// first writes wait for the gate and run on the target, with the session
// variables they set during the pause.
//   node prepare_gate.js PROXY_PORT SOURCE_PORT TARGET_PORT MIDFLIGHT SPEC
const mysql = require('mysql2/promise');
const { spawn } = require('child_process');
const readline = require('readline');

const [port, sourcePort, targetPort] = process.argv.slice(2, 5).map(Number);
const [mf, spec] = process.argv.slice(5, 7);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function check(ok, what) {
  console.log((ok ? 'ok: ' : 'FAILED: ') + what);
  if (!ok) process.exit(1);
}

// pymysql, one step per line read: connect, select_db + ping, where am I.
const PY_C = `
import sys, time, pymysql
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="app", database="shop", autocommit=True)
cur = c.cursor()
cur.execute("SELECT @@port")
print("ready", cur.fetchone()[0], flush=True)
sys.stdin.readline()
t0 = time.time()
c.select_db("shop2")
c.ping(reconnect=False)
print("took %.2f" % (time.time() - t0), flush=True)
sys.stdin.readline()
cur.execute("SELECT DATABASE(), @@port")
print("after %s %d" % cur.fetchone(), flush=True)
`;
// pymysql, new during the pause: connect (sql_mode, init_command + COMMIT,
// SET AUTOCOMMIT = 0), then its first write and where it ran.
const PY_E = `
import sys, time, pymysql
print("ready", flush=True)
sys.stdin.readline()
t0 = time.time()
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="app", database="shop",
                    sql_mode="TRADITIONAL", init_command="SET NAMES utf8mb4")
print("connected in %.2f" % (time.time() - t0), flush=True)
sys.stdin.readline()
cur = c.cursor()
cur.execute("UPDATE t SET v = 'e' WHERE id = 3")
c.commit()
print("wrote", flush=True)
cur.execute("SELECT @@port, @@sql_mode, @@character_set_client")
print("after %d %s %s" % cur.fetchone(), flush=True)
c.commit()
`;

// A python child driven line by line: step(true) lets it go on, and each
// step returns the next line it prints.
function child(code) {
  const py = spawn('/usr/bin/python3', ['-c', code, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: py.stdout })[Symbol.asyncIterator]();
  const step = async (say) => {
    if (say) py.stdin.write('\n');
    const r = await lines.next();
    return r.done ? 'exited' : r.value;
  };
  return { py, step };
}

(async () => {
  const { py, step } = child(PY_C);
  check((await step(false)) === `ready ${sourcePort}`, 'C (pymysql) starts on the source');
  const e = child(PY_E);  // started now, connects during the pause
  check((await e.step(false)) === 'ready', 'E (pymysql) ready to connect');
  const opts = { host: '127.0.0.1', port, user: 'app', password: 'app', database: 'shop' };
  const a = await mysql.createConnection(opts);
  const b = await mysql.createConnection(opts);
  const [[b0]] = await b.query('SELECT @@port AS port');
  check(b0.port === sourcePort, `B starts on the source (:${b0.port})`);
  await a.beginTransaction();
  await a.query("UPDATE t SET v = 'a' WHERE id = 1"); // A: inside a transaction

  let out = '';
  let code = null;
  const sw = spawn(mf, ['switch', 'writes', spec]);
  sw.stdout.on('data', (d) => { out += d; });
  sw.stderr.on('data', (d) => { out += d; });
  const done = new Promise((r) => sw.on('exit', (c) => { code = c; r(c); }));
  const last = () => out.trim().split('\n').pop();
  await sleep(1500);
  check(code === null, "the switch waits for A's transaction");

  // What a client thread that prepares synchronously does before it gets
  // back to A: held at the gate, this waits for the drain, which waits for A.
  const t0 = Date.now();
  // A failed prepare first: the proxy pings to learn the status after an ERR.
  const bad = await b.prepare('SELEC 1').then(() => null, (e) => e);
  const upd = await b.prepare('UPDATE t SET v = ? WHERE id = 1');
  const sel = await b.prepare('SELECT @@port AS port, v FROM t WHERE id = ?');
  await b.ping();
  const took = (Date.now() - t0) / 1000;
  check(bad !== null && bad.errno === 1064, `a bad prepare during the pause gets its error: ${bad && bad.message}`);
  await sleep(200); // an abandoned switch (a prepare held for the drain timeout) has exited by now
  check(took < 2.5 && code === null,
    `B's three prepares (one bad) and a ping answered during the pause in ${took.toFixed(2)} s (the switch ${
      code === null ? 'still waiting' : `ended with exit ${code}: ${last()}`})`);
  const c = await step(true);
  check(c.startsWith('took ') && Number(c.slice(5)) < 2.5 && code === null,
    `C's COM_INIT_DB and ping answered during the pause: ${c}`);

  // D and E: new connections during the pause, with no server session yet.
  const t1 = Date.now();
  const d = await mysql.createConnection(opts);
  const [[dv]] = await d.query('SELECT @@version_comment AS c LIMIT 1');
  await d.query('SET NAMES utf8mb4');
  await d.query("SET autocommit=1, sql_mode='TRADITIONAL'");
  const dupd = await d.prepare('UPDATE t SET v = ? WHERE id = 2');
  await d.ping();
  const dtook = (Date.now() - t1) / 1000;
  check(typeof dv.c === 'string' && code === null,
    `D connected during the pause: @@version_comment, SET NAMES, SET autocommit/sql_mode, a prepare and a ping answered in ${
      dtook.toFixed(2)} s (the switch ${code === null ? 'still waiting' : `ended with exit ${code}: ${last()}`})`);
  const e0 = await e.step(true);
  check(e0.startsWith('connected in ') && code === null,
    `E (pymysql: sql_mode, init_command, COMMIT, SET AUTOCOMMIT) connected during the pause: ${e0} (the switch ${
      code === null ? 'still waiting' : `ended with exit ${code}: ${last()}`})`);
  let dwrote = false;
  const dwrite = dupd.execute(['d']).then(() => { dwrote = true; });
  const ewrite = e.step(true);
  let ewrote = false;
  ewrite.then(() => { ewrote = true; });
  await sleep(1000);
  check(!dwrote && !ewrote && code === null, "D's and E's first writes wait for the gate (the switch still waiting)");

  await a.commit();
  let timer;
  const timeout = new Promise((r) => { timer = setTimeout(() => r('timeout'), 60000); });
  const result = await Promise.race([done, timeout]);
  clearTimeout(timer);
  check(result === 0, `the switch went through once A committed: ${last()}`);

  // The statements prepared on the source during the pause, executed with
  // the ids the client got then: re-prepared on the target as B moved.
  await upd.execute(['b']);
  const [rows] = await sel.execute([1]);
  check(rows.length === 1 && rows[0].port === targetPort && rows[0].v === 'b',
    `B's statements prepared during the pause run on the target: ${JSON.stringify(rows)}`);
  await upd.close();
  await sel.close();
  const [[a1]] = await a.query('SELECT @@port AS port, v FROM t WHERE id = 1');
  check(a1.port === targetPort && a1.v === 'b', `A's next transaction reads B's row on the target (:${a1.port})`);
  await dwrite;
  const [[d1]] = await d.query('SELECT @@port AS port, v, @@sql_mode AS m, @@character_set_client AS cs FROM t WHERE id = 2');
  check(d1.port === targetPort && d1.v === 'd' && d1.m.includes('TRADITIONAL') && d1.cs === 'utf8mb4',
    `D's first write ran on the target, with the variables it set during the pause: ${JSON.stringify(d1)}`);
  await dupd.close();
  await d.end();
  const ew = await ewrite;
  const e1 = await e.step(false);
  check(ew === 'wrote' && e1.startsWith(`after ${targetPort} `) && e1.includes('TRADITIONAL') && e1.endsWith(' utf8mb4'),
    `E's first write ran on the target, with its connect-time settings: ${e1}`);
  e.py.stdin.end();
  const c2 = await step(true);
  check(c2 === `after shop2 ${targetPort}`, `C is in the schema it chose during the pause, on the target: ${c2}`);
  py.stdin.end();
  await a.end();
  await b.end();
})().catch((e) => {
  console.log(`FAILED: ${e.message}`);
  process.exit(1);
});
