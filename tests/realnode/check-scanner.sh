#!/usr/bin/env bash
# Check, without Kubernetes, that real trivy gives exactly the expected findings for the test
# images, run the way the scan Job runs it:
#   * a trivy server (client/server mode, like the in-cluster trivy Deployment) on a free
#     loopback port, with the offline DB of trivydb/ and --skip-db-update;
#   * the client as the scan container runs it (src/core/scan_job/mod.rs): its command and
#     arguments (`/run/image-scanner/trivy rootfs --skip-dirs ... /`, the binary copied where
#     the init container puts it), working directory /tmp, and environment: HOME,
#     TRIVY_SCANNERS, TRIVY_CACHE_DIR, TRIVY_QUIET, TRIVY_FORMAT, TRIVY_TEMPLATE (verbatim
#     from the const TRIVY_TEMPLATE), plus the keys of the ConfigMap trivy-job-config
#     (kustomize/components/scan-jobs) with TRIVY_SERVER pointed at the local server; and the
#     Java DB where a Job with a Java DB image (TRIVY_JAVA_DB_IMAGE) has its init container
#     copy it, with TRIVY_SKIP_JAVA_DB_UPDATE=true as that Job sets (never a download). It runs
#     on the unpacked image without a chroot, so the container's paths are mapped into the
#     rootfs (see check() below);
#   * its stdout piped into `image-scanner-operator report -`, compared with the expected
#     file (tests/realnode/expected/, rendered by make-images.sh). Stderr must stay empty: in
#     the Job it lands in the same log as the result.
#
# It runs as root with all its capabilities (no namespaces, no capability drop): /home/app
# (uid 1000, mode 0700) is readable, so the minimist finding in it is expected, as it is from
# the scan Job only if that keeps a DAC capability (drop: [ALL] alone misses it).
#
# Checks: app:1 and clean:1, each against the base DB and the updated DB (base + CVE-2099-1004
# in bash: a rescan after a DB change must show it); java:1 against the base DB (a JAR named by
# its pom.properties and one named only by the Java DB).
#
# Usage: check-scanner.sh [WORK_DIR]
#   WORK_DIR keeps images, DBs, rootfs, raw outputs and server logs (default: a temporary
#   directory, removed at exit). OPERATOR_BIN: the operator binary to use (default: built with
#   `cargo build --bin image-scanner-operator`, a no-op when up to date).
# Exit status: 0 when every check passes, 1 otherwise (each mismatch printed as a diff).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
die() { echo "check-scanner.sh: $*" >&2; exit 1; }
log() { echo "check-scanner.sh: $*" >&2; }

[[ $# -le 1 ]] || { echo "usage: check-scanner.sh [WORK_DIR]" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "must run as root (make-images.sh and reading /home/app of the image)"
for tool in umoci curl diff; do
  command -v "$tool" >/dev/null || die "'$tool' not found on PATH"
done

server_pids=()
cleanup() {
  local pid
  for pid in "${server_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "${tmp_work:-}" ]]; then rm -rf "$tmp_work"; fi
}
trap cleanup EXIT

if [[ $# -eq 1 ]]; then
  mkdir -p "$1"
  work="$(cd "$1" && pwd)"
else
  tmp_work="$(mktemp -d)"
  work="$tmp_work"
fi

# The template, verbatim: the text between r#" and "# of the Rust const.
template="$(sed -n '/^pub const TRIVY_TEMPLATE: &str = r#"/,/"#;$/p' "$repo/src/core/scan_job/mod.rs")"
template="${template#'pub const TRIVY_TEMPLATE: &str = r#"'}"
template="${template%'"#;'}"
# shellcheck disable=SC2016  # $found is template text, not a shell variable
[[ "$template" == '{{'*'toJson $found -}}' ]] || die "cannot extract TRIVY_TEMPLATE from src/core/scan_job/mod.rs"

# The ConfigMap trivy-job-config: `- KEY=VALUE` literals, each a TRIVY_KEY variable of the
# scan container.
mapfile -t job_config < <(sed -n 's/^ *- \([A-Z_][A-Z0-9_]*=.*\)$/TRIVY_\1/p' \
  "$repo/kustomize/components/scan-jobs/kustomization.yaml")
[[ ${#job_config[@]} -gt 0 ]] || die "no literals found in kustomize/components/scan-jobs/kustomization.yaml"

start=$SECONDS
bin_dir="$("$here/build-trivy.sh" | tail -n 1)"
trivy="$bin_dir/trivy"
log "tools ready in $((SECONDS - start)) s: $bin_dir"

if [[ -n "${OPERATOR_BIN:-}" ]]; then
  operator="$OPERATOR_BIN"
else
  (cd "$repo" && nice -n 10 cargo build --quiet --bin image-scanner-operator)
  operator="${CARGO_TARGET_DIR:-$repo/target}/debug/image-scanner-operator"
fi
[[ -x "$operator" ]] || die "operator binary $operator not found"

t=$SECONDS
"$here/make-images.sh" "$work/images"
for variant in base updated; do
  # trivy-db logs its progress on stderr: keep it out of the way unless it fails.
  "$bin_dir/trivydb" --variant "$variant" "$work/db-$variant" 2> "$work/trivydb-$variant.log" ||
    { cat "$work/trivydb-$variant.log" >&2; die "trivydb --variant $variant failed"; }
done
for img in app clean java; do
  rm -rf "$work/bundle-$img"
  umoci unpack --image "$work/images/oci:$img:1" "$work/bundle-$img"
done
log "images, DBs and rootfs ready in $((SECONDS - t)) s"

# The unpacked layer must have kept the owner and mode of /home/app, or the check below
# would not test what it claims.
[[ "$(stat -c '%u:%g %a' "$work/bundle-app/rootfs/home/app")" == "1000:1000 700" ]] ||
  die "home/app lost its owner or mode in the layer: $(stat -c '%u:%g %a' "$work/bundle-app/rootfs/home/app")"

# start_server NAME CACHE_DIR: starts a trivy server on a free loopback port; sets $port.
start_server() {
  local name="$1" cache="$2" attempt pid
  for attempt in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 20000))
    # Something answers there already: try another.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
    "$trivy" server --listen "127.0.0.1:$port" --cache-dir "$cache" --skip-db-update \
      > "$work/server-$name.log" 2>&1 &
    pid=$!
    server_pids+=("$pid")
    local i
    for i in $(seq 1 300); do
      if curl -sf -o /dev/null "http://127.0.0.1:$port/healthz"; then
        log "trivy server $name (pid $pid) listening on 127.0.0.1:$port after ${i}00 ms"
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    log "trivy server $name on port $port did not come up (attempt $attempt):"
    tail -n 5 "$work/server-$name.log" >&2
    kill "$pid" 2>/dev/null || true
  done
  die "cannot start the trivy server $name"
}

start_server base "$work/db-base"
port_base=$port
start_server updated "$work/db-updated"
port_updated=$port

# The scan container as the Job defines it (src/core/scan_job/mod.rs): the command and args of
# scan_container()/scan_args() for the default command `rootfs`, its working directory, and
# the environment it gets from `env` (after `envFrom`, so it wins). Mirrored by hand: stop
# when the Job's arguments are no longer these, rather than check something else.
readonly job_binary=/run/image-scanner/trivy
readonly job_workdir=/tmp
# shellcheck disable=SC2016  # $(TRIVY_SKIP_DIRS) is a Kubernetes reference, not shell
job_args=(rootfs --skip-dirs '/run/image-scanner,/tmp,$(TRIVY_SKIP_DIRS)' /)
# The unit tests pin the arguments the Job is built with (src/core/scan_job/tests.rs).
# shellcheck disable=SC2016  # the same
grep -qF '"/run/image-scanner,/tmp,$(TRIVY_SKIP_DIRS)"' "$repo/src/core/scan_job/tests.rs" ||
  die "the scan Job's arguments changed in src/core/scan_job: update job_args in check-scanner.sh"

# The Java DB as the Job's second init container leaves it: <TRIVY_CACHE_DIR>/java-db.
readonly job_java_db=/tmp/java-db
grep -qF '"TRIVY_SKIP_JAVA_DB_UPDATE", "true"' "$repo/src/core/scan_job/mod.rs" &&
  grep -qF "const JAVA_DB_IN_SCAN: &str = \"$job_java_db\";" "$repo/src/core/scan_job/mod.rs" ||
  die "the scan Job's Java DB settings changed in src/core/scan_job/mod.rs: update check-scanner.sh"

# kube_expand STRING: expands $(NAME) from the container environment like the kubelet does;
# an undefined name stays as it is.
kube_expand() {
  local s="$1" kv
  for kv in "${container_env[@]}"; do
    s="${s//"\$(${kv%%=*})"/"${kv#*=}"}"
  done
  printf '%s' "$s"
}

failures=0
# check NAME IMAGE PORT EXPECTED: one scan, compared with one expected file.
#
# The scan runs outside a chroot, so every path the Job sees inside the container is mapped
# into the unpacked rootfs R: the binary the init container copies in is R/run/image-scanner/
# trivy, the working directory, HOME and TRIVY_CACHE_DIR (the Job's /tmp emptyDir) are the
# image's own empty R/tmp, and so are absolute --skip-dirs entries and the target `/` (trivy
# resolves an absolute skip path against the host's root, not against the target).
check() {
  local name="$1" img="$2" port="$3" expected="$work/images/expected/$4.json"
  local out="$work/out/$name" rootfs="$work/bundle-$2/rootfs" rc=0 t=$SECONDS
  local arg dir dirs args=() container_env=()
  mkdir -p "$out"
  container_env=("${job_config[@]}" "TRIVY_SERVER=http://127.0.0.1:$port"
    "HOME=$rootfs$job_workdir" TRIVY_SCANNERS=vuln "TRIVY_CACHE_DIR=$rootfs$job_workdir"
    TRIVY_QUIET=true TRIVY_FORMAT=template "TRIVY_TEMPLATE=$template" TRIVY_SKIP_JAVA_DB_UPDATE=true)
  local prev=""
  for arg in "${job_args[@]}"; do
    arg="$(kube_expand "$arg")"
    if [[ "$prev" == --skip-dirs ]]; then
      dirs=()
      IFS=, read -r -a dirs <<< "$arg"
      arg=""
      for dir in "${dirs[@]}"; do
        [[ "$dir" == /* ]] && dir="$rootfs$dir"
        arg+="${arg:+,}$dir"
      done
    elif [[ "$arg" == / ]]; then
      arg="$rootfs"
    fi
    args+=("$arg")
    prev="$arg"
  done
  [[ -z "$(ls -A "$rootfs$job_workdir")" ]] || die "$rootfs$job_workdir is not empty"
  cp -R "$work/images/java-db" "$rootfs$job_java_db"
  # The init container's copy. Scanned, it would add trivy's own stdlib CVE-2099-3001: the
  # expected files hold that finding once, from /usr/local/bin/hello.
  install -D -m 0755 "$trivy" "$rootfs$job_binary"
  (cd "$rootfs$job_workdir" && env -i PATH=/usr/local/bin:/usr/bin:/bin "${container_env[@]}" \
      "$rootfs$job_binary" "${args[@]}") > "$out/trivy.out" 2> "$out/trivy.err" || rc=$?
  printf '%q ' "$job_binary" "${args[@]}" > "$out/command"
  rm -rf "$rootfs$job_java_db"
  if [[ -n "$(ls -A "$rootfs$job_workdir")" ]]; then
    log "note $name: the client left files in its /tmp (HOME, cache dir): $(find "$rootfs$job_workdir" -mindepth 1 -maxdepth 1 -printf '%f ')"
    find "$rootfs$job_workdir" -mindepth 1 -delete
  fi
  rm -f "$rootfs$job_binary"
  if [[ $rc -ne 0 || -s "$out/trivy.err" ]]; then
    log "FAIL $name: trivy exit status $rc, stderr:"
    cat "$out/trivy.err" >&2
    failures=$((failures + 1))
    return 0
  fi
  if ! "$operator" report - < "$out/trivy.out" > "$out/report.json" 2> "$out/report.err"; then
    log "FAIL $name: report rejected trivy's output: $(cat "$out/report.err")"
    failures=$((failures + 1))
    return 0
  fi
  if diff -u --label "expected/$4.json" --label "actual ($name)" "$expected" "$out/report.json" >&2; then
    log "ok   $name ($((SECONDS - t)) s): $(grep -c '"vulnerabilityID"' "$out/report.json" || true) findings as expected"
  else
    log "FAIL $name: the findings differ from expected/$4.json (diff above; raw trivy output: $out/trivy.out)"
    failures=$((failures + 1))
  fi
}

t=$SECONDS
check app-base app "$port_base" app
check app-updated app "$port_updated" app-updated
check clean-base clean "$port_base" clean
check clean-updated clean "$port_updated" clean-updated
check java-base java "$port_base" java
log "scans done in $((SECONDS - t)) s (total $((SECONDS - start)) s)"

if [[ $failures -ne 0 ]]; then
  log "$failures check(s) FAILED; work files in $work${tmp_work:+ (removed at exit: pass a WORK_DIR to keep them)}"
  exit 1
fi
log "all checks passed"
