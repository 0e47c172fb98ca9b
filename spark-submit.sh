#!/usr/bin/env bash
# Run a custseg job with spark-submit: local[*] by default, any --master otherwise.
#
#   ./spark-submit.sh jobs/pipeline.py [--master URL] [--spark-conf K=V ...] [job args...]
#
# Builds src/custseg into build/dist/custseg.zip and ships it with --py-files, adds
# Delta (--packages io.delta:delta-spark_2.13:<pinned>, or --jars from CUSTSEG_JARS_DIR) and
# Splink's similarity UDF jar (--jars),
# and tells the job that spark-submit owns the master, Delta jars and driver memory.
# Job arguments (--conf FILE, --set k=v, --run-id ...) pass through unchanged.
# Python apps run in client mode (the driver is this machine); executors use
# PYSPARK_PYTHON, by default this project's .venv interpreter, which must exist at the
# same path on every worker (or point PYSPARK_PYTHON at a packed environment).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${CUSTSEG_PYTHON:-$ROOT/.venv/bin/python}"
SPARK_SUBMIT="${SPARK_SUBMIT:-$ROOT/.venv/bin/spark-submit}"

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
JOB="$1"; shift
if [[ ! -f "$JOB" && -f "$ROOT/$JOB" ]]; then JOB="$ROOT/$JOB"; fi
[[ -f "$JOB" ]] || { echo "spark-submit.sh: job file not found: $JOB" >&2; exit 2; }

MASTER="local[*]"
SPARK_CONFS=()
JOB_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --master) MASTER="$2"; shift 2 ;;
    --spark-conf) SPARK_CONFS+=(--conf "$2"); shift 2 ;;
    *) JOB_ARGS+=("$1"); shift ;;
  esac
done

DIST="$ROOT/build/dist"
mkdir -p "$DIST"
"$PY" - "$ROOT/src" "$DIST/custseg.zip" <<'PYZIP'
import os, sys, zipfile
src, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
    for folder, dirs, files in os.walk(os.path.join(src, "custseg")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if not name.endswith(".pyc"):
                path = os.path.join(folder, name)
                zf.write(path, os.path.relpath(path, src))
PYZIP

# Splink's similarity UDF jar (jaro_winkler, ...) must be on the driver's classpath when
# Splink registers its functions: under spark-submit the JVM is already running, so
# spark.jars set by the session builder reaches the executors only; --jars does both.
SPLINK_JAR="$("$PY" -c 'from custseg.session import splink_jar; print(splink_jar())')"
if [[ -n "${CUSTSEG_JARS_DIR:-}" ]]; then
  JARS=(--jars "$(ls "$CUSTSEG_JARS_DIR"/*.jar | paste -sd, -),$SPLINK_JAR")
else
  JARS=(--packages "$("$PY" -c 'from custseg.session import delta_package; print(delta_package())')" --jars "$SPLINK_JAR")
fi

# The driver JVM is started by spark-submit, before the session builder could set its options.
DRIVER_JAVA_OPTIONS="$("$PY" -c 'from custseg.session import JVM_OPTIONS; print(JVM_OPTIONS)')"

export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PY}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PY}"
exec "$SPARK_SUBMIT" \
  --master "$MASTER" \
  --name "custseg $(basename "$JOB" .py)" \
  --py-files "$DIST/custseg.zip" \
  --driver-java-options "$DRIVER_JAVA_OPTIONS" \
  "${JARS[@]}" \
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
  --conf spark.sql.session.timeZone=UTC \
  ${SPARK_CONFS[@]+"${SPARK_CONFS[@]}"} \
  "$JOB" \
  --set spark.master= --set spark.resolve_delta_package=false --set spark.driver_memory= \
  ${JOB_ARGS[@]+"${JOB_ARGS[@]}"}
