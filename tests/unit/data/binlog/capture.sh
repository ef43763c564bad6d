#!/bin/bash
# Recreates the binlog fixtures next to this script from a throwaway MariaDB
# 10.11 (mariadbd, mariadb-install-db and the mariadb client on PATH):
#   types.binlog             types.sql, binlog_row_metadata=NO_LOG (the default)
#   metadata_full.binlog     metadata.sql with binlog_row_metadata=FULL
#   metadata_minimal.binlog  a few statements with binlog_row_metadata=MINIMAL
#   open.binlog              a binlog the server still has open
# and prints the first and last bytes of the 100 KiB and 20 MiB rows events
# that binlog_event_test.cc rebuilds in memory. Statement timestamps are fixed
# by SET TIMESTAMP, so a new capture differs only in the times of the
# FORMAT_DESCRIPTION, GTID_LIST, BINLOG_CHECKPOINT and ROTATE events, in the
# exec_time of QUERY events and in those events' CRC32s.
#
# Usage: capture.sh [port]   (default 26991; the server listens on 127.0.0.1)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PORT=${1:-26991}
D=$(mktemp -d /tmp/binlog-capture.XXXXXX)
mariadb-install-db --no-defaults --datadir=$D/data --auth-root-authentication-method=normal --user=root >/dev/null
mariadbd --no-defaults --datadir=$D/data --port=$PORT --bind-address=127.0.0.1 --socket=$D/sock --user=root \
  --log-bin=$D/data/mariadb-bin --binlog-format=ROW --binlog-row-image=FULL --server-id=7 \
  --max-allowed-packet=64M >$D/server.log 2>&1 &
for _ in $(seq 60); do [ -S $D/sock ] && break; sleep 0.5; done
M="mariadb -S $D/sock -uroot --default-character-set=utf8mb4 --max-allowed-packet=64M"
binlog() { $M -N -e "SHOW MASTER STATUS" | cut -f1; }

$M -e "FLUSH BINARY LOGS"
f=$(binlog); $M <$HERE/types.sql; $M -e "FLUSH BINARY LOGS"; cp $D/data/$f $HERE/types.binlog

$M -e "SET GLOBAL binlog_row_metadata = FULL; FLUSH BINARY LOGS"
f=$(binlog); $M <$HERE/metadata.sql; $M -e "FLUSH BINARY LOGS"; cp $D/data/$f $HERE/metadata_full.binlog

$M -e "SET GLOBAL binlog_row_metadata = MINIMAL; FLUSH BINARY LOGS"
f=$(binlog)
$M -e "SET SESSION time_zone = '+00:00'; SET TIMESTAMP = 1700000200; USE mf;
  INSERT INTO meta (id, t, tu, name, e) VALUES (1, -128, 255, 'min', 'p');
  DELETE FROM ints WHERE id = 4;
  CREATE TABLE probe (y YEAR, t TINYINT, b BIT(3), u TINYINT UNSIGNED, f FLOAT UNSIGNED, tm TIME);
  INSERT INTO probe VALUES (2000, -1, 1, 1, 1, '01:00:00');"
$M -e "SET GLOBAL binlog_row_metadata = NO_LOG; FLUSH BINARY LOGS"; cp $D/data/$f $HERE/metadata_minimal.binlog

f=$(binlog)
$M -e "SET TIMESTAMP = 1700000300; USE mf; CREATE TABLE big (id INT PRIMARY KEY, data LONGBLOB);
  INSERT INTO big VALUES (1, REPEAT('0123456789abcdef', 6400));
  INSERT INTO big VALUES (2, REPEAT('0123456789abcdef', 1310720));"
$M -e "FLUSH BINARY LOGS"
python3 - $D/data/$f <<'PY'
import struct, sys
data = open(sys.argv[1], 'rb').read()
pos = 4
while pos < len(data):
    size = struct.unpack_from('<I', data, pos + 9)[0]
    if data[pos + 4] == 23:  # WRITE_ROWS: 38 bytes up to the blob, the blob, the CRC32
        print(size, data[pos:pos + 38].hex(), data[pos + size - 4:pos + size].hex())
    pos += size
PY

# Still open: its FORMAT_DESCRIPTION has LOG_EVENT_BINLOG_IN_USE_F set.
f=$(binlog); cp $D/data/$f $HERE/open.binlog

mariadb-admin -S $D/sock -uroot shutdown
rm -rf $D
