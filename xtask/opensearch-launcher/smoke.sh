#!/usr/bin/env bash
# Smoke test for the OpenSearch launcher: build, start, exercise over HTTP, SIGTERM, check clean exit.
# Usage (from anywhere): bash xtask/opensearch-launcher/smoke.sh [BUILD_DIR]
# Needs: mvn, java 17, curl. Leaves no process behind.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
B="${1:-$ROOT/target/opensearch-launcher-build}"
mkdir -p "$B"
B="$(cd "$B" && pwd)"

t0=$(date +%s.%N)
mvn -B -q -f "$HERE/pom.xml" -DskipTests -Dlauncher.buildDir="$B" package
t1=$(date +%s.%N)
echo "smoke: maven package took $(awk "BEGIN{printf \"%.1f\", $t1-$t0}") s"

HOME_DIR="$B/smoke-home"
rm -rf "$HOME_DIR"
OUT="$B/smoke.out"; ERR="$B/smoke.err"
JAVA_OPTS=(-Xms512m -Xmx512m -XX:+UseSerialGC -Xss1m -Djava.awt.headless=true -Dfile.encoding=UTF-8
  -Djava.locale.providers=SPI,COMPAT -XX:-OmitStackTraceInFastThrow)
start_node() {
  : >"$OUT"; : >"$ERR"
  t0=$(date +%s.%N)
  java "${JAVA_OPTS[@]}" -cp "$B/opensearch-launcher.jar:$B/lib/*" dev.dovetail.opensearch.Launcher \
    --http-port 0 --home "$HOME_DIR" --cluster-name smoke >"$OUT" 2>"$ERR" &
  PID=$!
  trap 'kill -TERM "$PID" 2>/dev/null || true' EXIT
  URL=""
  for _ in $(seq 1 1200); do
    if grep -q "^DOVETAIL-OPENSEARCH FAILED" "$OUT"; then cat "$OUT" "$ERR"; exit 1; fi
    URL=$(sed -n 's/^DOVETAIL-OPENSEARCH READY //p' "$OUT")
    [ -n "$URL" ] && break
    kill -0 "$PID" 2>/dev/null || { echo "smoke: launcher died"; cat "$OUT" "$ERR"; exit 1; }
    sleep 0.1
  done
  t1=$(date +%s.%N)
  [ -n "$URL" ] || { echo "smoke: no READY line in 120 s"; exit 1; }
  echo "smoke: READY at $URL after $(awk "BEGIN{printf \"%.1f\", $t1-$t0}") s"
}

stop_node() {
  t0=$(date +%s.%N)
  kill -TERM "$PID"
  set +e; wait "$PID"; rc=$?; set -e
  t1=$(date +%s.%N)
  trap - EXIT
  echo "smoke: SIGTERM -> exit code $rc after $(awk "BEGIN{printf \"%.2f\", $t1-$t0}") s; $(grep STOPPED "$OUT" || echo 'no STOPPED line')"
  [ "$rc" = 0 ] || fail "unexpected exit code $rc"
  grep -q "STOPPED clean=true" "$OUT" || fail "node did not report a clean stop"
}

fail() { echo "smoke: FAIL $*"; exit 1; }
start_node

J='content-type: application/json'
curl -sf "$URL/" | grep -q '"number" : "2.19' || fail "root endpoint"
curl -sf -XPUT "$URL/smoke" -H "$J" \
  -d '{"settings":{"analysis":{"analyzer":{"folded":{"type":"custom","tokenizer":"standard","filter":["lowercase","asciifolding","porter_stem"]}}}},
       "mappings":{"properties":{"title":{"type":"text"},"en":{"type":"text","analyzer":"english"},"f":{"type":"text","analyzer":"folded"}}}}' >/dev/null \
  || fail "create index"
curl -sf -XPUT "$URL/smoke/_doc/1?version=5&version_type=external&refresh=true" -H "$J" \
  -d '{"title":"Hello Dovetail","en":"running foxes","f":"Crème Brûlée"}' | grep -q '"_version":5' || fail "index v5"
curl -sf "$URL/smoke/_search" -H "$J" -d '{"query":{"match":{"title":"dovetail"}}}' | grep -q '"value":1' || fail "search title"
curl -sf "$URL/smoke/_search" -H "$J" -d '{"query":{"match":{"en":"run"}}}' | grep -q '"value":1' || fail "search english"
curl -sf "$URL/smoke/_search" -H "$J" -d '{"query":{"match":{"f":"creme brulee"}}}' | grep -q '"value":1' || fail "search folded"
code=$(curl -s -o /dev/null -w '%{http_code}' -XPUT "$URL/smoke/_doc/1?version=3&version_type=external" -H "$J" -d '{"title":"old"}')
[ "$code" = 409 ] || fail "stale external version gave $code, want 409"
curl -sf "$URL/_cluster/health?wait_for_status=green&timeout=10s" | grep -q '"status":"green"' || fail "cluster not green"
echo "smoke: HTTP checks passed (root, create, external version 5, search x3, 409 on version 3, green)"
echo "smoke: RSS $(ps -o rss= -p "$PID" | awk '{printf "%.0f MiB", $1/1024}')"

stop_node

# Restart on the same home: the data must survive a SIGTERM stop.
start_node
curl -sf "$URL/smoke/_doc/1" | grep -q '"_version":5' || fail "doc lost after restart"
curl -sf "$URL/_cluster/health?wait_for_status=green&timeout=10s" | grep -q '"status":"green"' || fail "not green after restart"
echo "smoke: restart on same home kept the data"
stop_node
echo "smoke: 1 passed, 0 failed"
