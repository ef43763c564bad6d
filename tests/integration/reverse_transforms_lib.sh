# Shared by cross_reverse_transforms.sh and pg_reverse_transforms.sh (sourced
# after lib.sh): the source table public."Order Lines", the transforms both
# migrate it with, and reading its rows back.

# create_order_lines: 40 rows on the source.
create_order_lines() {
  sql_src <<'SQL'
CREATE TABLE "Order Lines" (id int PRIMARY KEY, "select" text, qty_text text, price numeric(10,2),
                            made timestamp(3) NOT NULL, note text, secret text NOT NULL DEFAULT 'none');
INSERT INTO "Order Lines" SELECT g, 'p' || g, (g % 9)::text, g + 0.25, '2024-01-01'::timestamp + g * interval '1 h',
                                 'n' || g, 's' || g
  FROM generate_series(1, 40) g;
SQL
}

TRANSFORMS=(
  "transforms:"
  "  public.Order Lines:"
  "    rename: lines"
  "    exclude: [note, secret]"
  "    columns:"
  "      select: {rename: pick}"
  "      qty_text: {rename: qty, cast: text_to_int}"
  "      made: {cast: timestamp_to_timestamptz, zone: \"+02:00\"}"
  "    add:"
  "      total: price * qty_text"
  "      origin: \"'pg'\""
)

# What rows 2, 3, 4, 500, 501 and 900 are on the source after the target's
# writes (each test's): 2 updated (note and secret kept), 3 deleted, 4 moved
# to 900 and 500, 501 inserted (note NULL, secret its default).
AFTER_WRITES="2|it's picked|77|2.25|2024-07-01 00:59:59.5|n2|s2,500|new|4|2.50|2024-05-06 01:00:00|-|none,501|-|-|-|2024-01-01 02:00:00.001|-|none,900|p4|4|4.25|2024-01-01 04:00:00|-|none"

# src_rows IDS: the source's rows, as text (NULL as -).
src_rows() {
  sql_src -c "SELECT string_agg(concat_ws('|', id, coalesce(\"select\", '-'), coalesce(qty_text, '-'),
    coalesce(price::text, '-'), made, coalesce(note, '-'), secret), ',' ORDER BY id) FROM \"Order Lines\" WHERE id IN ($1)"
}
# wait_src IDS WANT: the source's rows IDS become WANT (reverse replication is asynchronous).
wait_src() {
  local got
  for _ in $(seq 240); do
    got=$(src_rows "$1")
    [[ $got == "$2" ]] && return 0
    sleep 0.25
  done
  fail "source rows ($1) after the target's writes:
  got  $got
  want $2"
}
