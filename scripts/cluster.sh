#!/usr/bin/env bash
# A Spark standalone cluster on this machine: one master and two workers on 127.0.0.1,
# started with the installed pyspark's own classes (bin/spark-class).
#
#   scripts/cluster.sh start     start the master and the workers; waits until both
#                                workers have registered, prints the master URL
#   scripts/cluster.sh status    prints each process as running or stopped (exit 1 if
#                                any is stopped)
#   scripts/cluster.sh stop      stops exactly the processes this script started
#   scripts/cluster.sh url       prints the master URL
#
# Settings (environment):
#   CUSTSEG_CLUSTER_DIR       logs, pid files and worker folders (default ./data/cluster)
#   CUSTSEG_CLUSTER_PORT      the master's port (default 7077); the web UIs use the next
#                             three ports (master UI, worker 1 UI, worker 2 UI)
#   CUSTSEG_CLUSTER_WORKERS   how many workers (default 2)
#   CUSTSEG_WORKER_CORES      cores per worker (default 1)
#   CUSTSEG_WORKER_MEMORY     memory per worker (default 1536m; an executor's
#                             spark.executor.memory must fit in it)
#   CUSTSEG_CLUSTER_WAIT      seconds to wait for the workers to register (default 90)
#
# Submit to it with the URL `start` prints, e.g.
#   ./spark-submit.sh jobs/pipeline.py --master spark://127.0.0.1:7077 --conf conf/test.yaml
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${CUSTSEG_PYTHON:-$ROOT/.venv/bin/python}"
DIR="${CUSTSEG_CLUSTER_DIR:-$ROOT/data/cluster}"
PORT="${CUSTSEG_CLUSTER_PORT:-7077}"
WORKERS="${CUSTSEG_CLUSTER_WORKERS:-2}"
CORES="${CUSTSEG_WORKER_CORES:-1}"
MEMORY="${CUSTSEG_WORKER_MEMORY:-1536m}"
WAIT="${CUSTSEG_CLUSTER_WAIT:-90}"
URL="spark://127.0.0.1:$PORT"
MASTER_CLASS=org.apache.spark.deploy.master.Master
WORKER_CLASS=org.apache.spark.deploy.worker.Worker

die() { echo "cluster.sh: $*" >&2; exit 1; }

# A pid file names a process of ours only while that process still runs our class with
# our folder on its command line: a pid reused by another process is never signalled.
ours() {
  local pidfile="$1" class="$2" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$class" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$DIR" || return 1
  echo "$pid"
}

# Start one daemon in its own session, logs to $DIR/<name>.log, pid to $DIR/<name>.pid.
# setsid, nohup and spark-class all exec, so the recorded pid becomes the JVM's; the
# (empty) properties file puts $DIR on the command line from the first moment.
launch() {
  local name="$1" class="$2"; shift 2
  SPARK_LOCAL_IP=127.0.0.1 SPARK_LOCAL_DIRS="$DIR/$name-tmp" SPARK_LOG_DIR="$DIR" \
    setsid nohup "$SPARK_HOME/bin/spark-class" "$class" --properties-file "$DIR/spark.conf" "$@" \
    >"$DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/$name.pid"
}

registered() {
  grep -c "Registering worker" "$DIR/master.log" 2>/dev/null || true
}

start() {
  [[ -x "$PY" ]] || die "no Python at $PY: run 'make install' first"
  # the pyspark package is a Spark home (jars/, bin/spark-class); naming it spares
  # spark-class from looking for pyspark with whichever python3 is first on the PATH
  SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')" \
    || die "pyspark is not installed in $PY"
  export SPARK_HOME
  mkdir -p "$DIR"
  : >"$DIR/spark.conf"
  if ours "$DIR/master.pid" "$MASTER_CLASS" >/dev/null; then
    die "a cluster started from $DIR is already running ($URL); stop it first"
  fi
  local ui=$((PORT + 1))
  launch master "$MASTER_CLASS" --host 127.0.0.1 --port "$PORT" --webui-port "$ui"
  for i in $(seq 1 "$WORKERS"); do
    mkdir -p "$DIR/worker-$i"
    launch "worker-$i" "$WORKER_CLASS" "$URL" --host 127.0.0.1 --cores "$CORES" \
      --memory "$MEMORY" --work-dir "$DIR/worker-$i" --webui-port $((ui + i))
  done
  local deadline=$((SECONDS + WAIT))
  while (( $(registered) < WORKERS )); do
    if (( SECONDS >= deadline )) || ! ours "$DIR/master.pid" "$MASTER_CLASS" >/dev/null; then
      echo "cluster.sh: $(registered) of $WORKERS workers registered with $URL after $WAIT s;" \
        "last lines of the logs in $DIR:" >&2
      for log in "$DIR"/*.log; do echo "== $log" >&2; tail -n 15 "$log" >&2; done
      stop >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "$URL"
}

status() {
  local failed=0 name class
  for pidfile in "$DIR"/*.pid; do
    [[ -e "$pidfile" ]] || { echo "no cluster started from $DIR"; return 1; }
    name="$(basename "$pidfile" .pid)"
    class="$WORKER_CLASS"; [[ "$name" == master ]] && class="$MASTER_CLASS"
    if pid="$(ours "$pidfile" "$class")"; then
      echo "$name running (pid $pid)"
    else
      echo "$name stopped"; failed=1
    fi
  done
  [[ "$failed" == 0 ]] && echo "master $URL"
  return "$failed"
}

stop() {
  local pids=() name class pid
  for pidfile in "$DIR"/*.pid; do
    [[ -e "$pidfile" ]] || continue
    name="$(basename "$pidfile" .pid)"
    class="$WORKER_CLASS"; [[ "$name" == master ]] && class="$MASTER_CLASS"
    if pid="$(ours "$pidfile" "$class")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$pidfile"
  done
  # executors are children of their worker and exit with it; give the JVMs 20 s
  for _ in $(seq 1 40); do
    local alive=0
    for pid in ${pids[@]+"${pids[@]}"}; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ "$alive" == 0 ]] && break
    sleep 0.5
  done
  for pid in ${pids[@]+"${pids[@]}"}; do kill -KILL "$pid" 2>/dev/null || true; done
  echo "stopped ${#pids[@]} process(es) started from $DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  url) echo "$URL" ;;
  *) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
