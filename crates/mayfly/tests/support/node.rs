//! Stand-ins for systemd and Docker on PATH, for the node tests: each records its arguments
//! and answers as the real tool documents. The fake `systemctl` really runs a unit's
//! `ExecStart` (with its `EnvironmentFile`, `%i` filled in) in a session of its own, so a
//! node's slots run for real against the simulator; `is-active` says active while that
//! process lives, failed once it died.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const FAKE_SYSTEMCTL: &str = r#"#!/bin/bash
state="${FAKE_SYSTEMD_STATE:?}"
units="${MAYFLY_SYSTEMD_DIR:?}"
mkdir -p "$state"
echo "systemctl $*" >> "$state/calls.log"

unit_file() {
    local u="$1"
    if [[ -f "$units/$u" ]]; then echo "$units/$u"; return 0; fi
    if [[ $u == *@*.service ]]; then
        local t="${u%%@*}@.service"
        if [[ -f "$units/$t" ]]; then echo "$units/$t"; return 0; fi
    fi
    return 1
}
instance() { local i="${1#*@}"; echo "${i%.service}"; }
running() {
    # Alive and not a zombie (an orphan's zombie lingers where nothing reaps it).
    local f="$state/$1.pid" st
    [[ -f $f ]] || return 1
    st=$(sed -e 's/.*) //' "/proc/$(cat "$f")/stat" 2>/dev/null | cut -d' ' -f1)
    [[ -n $st && $st != Z && $st != X ]]
}
descendants() {
    local c
    for c in $(ps -o pid= --ppid "$1"); do descendants "$c"; echo "$c"; done
}
start() {
    local u="$1" f exec envf type i
    if [[ $u == *.timer ]]; then touch "$state/$u.active"; return 0; fi
    f=$(unit_file "$u") || { echo "Failed to start $u: Unit $u not found." >&2; return 5; }
    running "$u" && return 0
    exec=$(sed -n 's/^ExecStart=//p' "$f")
    i=$(instance "$u")
    exec="${exec//%i/$i}"
    exec="${exec//%%/%}"
    envf=$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$f")
    type=$(sed -n 's/^Type=//p' "$f")
    if [[ $type == oneshot ]]; then
        ( if [[ -f $envf ]]; then set -a; . "$envf"; set +a; fi; eval "$exec" ) >> "$state/$u.log" 2>&1
        return $?
    fi
    setsid bash -c 'if [[ -f "$1" ]]; then set -a; . "$1"; set +a; fi; eval "exec $2"' _ "$envf" "$exec" \
        >> "$state/$u.log" 2>&1 < /dev/null &
    echo $! > "$state/$u.pid"
}
stop() {
    local u="$1" pid
    if [[ $u == *.timer ]]; then rm -f "$state/$u.active"; return 0; fi
    if ! running "$u"; then rm -f "$state/$u.pid"; return 0; fi
    pid=$(cat "$state/$u.pid")
    kill -TERM "$pid"
    for _ in $(seq 1 900); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null
    rm -f "$state/$u.pid"
}
active() {
    local u="$1"
    if [[ $u == *.timer ]]; then [[ -f "$state/$u.active" ]]; return; fi
    running "$u"
}

cmd="$1"; shift
now=0
args=()
for a in "$@"; do
    case "$a" in
    --now) now=1 ;;
    --signal=*) sig="${a#--signal=}" ;;
    --no-pager|--quiet) ;;
    *) args+=("$a") ;;
    esac
done
rc=0
case "$cmd" in
daemon-reload) ;;
enable) for u in "${args[@]}"; do touch "$state/$u.enabled"; [[ $now == 1 ]] && { start "$u" || rc=$?; }; done ;;
disable) for u in "${args[@]}"; do rm -f "$state/$u.enabled"; [[ $now == 1 ]] && stop "$u"; done ;;
start) for u in "${args[@]}"; do start "$u" || rc=$?; done ;;
stop) for u in "${args[@]}"; do stop "$u"; done ;;
restart) for u in "${args[@]}"; do stop "$u"; start "$u" || rc=$?; done ;;
kill)
    for u in "${args[@]}"; do
        if running "$u"; then
            pid=$(cat "$state/$u.pid")
            for p in $(descendants "$pid") "$pid"; do kill "-${sig#SIG}" "$p" 2>/dev/null; done
        fi
    done ;;
is-active)
    for u in "${args[@]}"; do
        if active "$u"; then echo active
        elif [[ -f "$state/$u.pid" ]]; then echo failed; rc=3
        else echo inactive; rc=3; fi
    done ;;
status) for u in "${args[@]}"; do active "$u" && echo "$u: active" || { echo "$u: inactive"; rc=3; }; done ;;
*) echo "fake systemctl: unsupported: $cmd" >&2; rc=1 ;;
esac
exit $rc
"#;

/// A `docker` with one of everything prune looks at: two stopped containers a job left (one
/// with a runner key label, one with the node's label, both old), one recent, one of another
/// tool; a runner network; a dangling volume with a runner key. `rm` and the prunes answer as
/// Docker does.
pub const FAKE_DOCKER: &str = r#"#!/bin/bash
state="${FAKE_DOCKER_STATE:?}"
mkdir -p "$state"
printf '%s\n' "$*" >> "$state/calls.log"
case "$1 $2" in
"version --format") echo "1.47" ;;
"ps --all")
    [[ -f $state/rm-old-runner ]] || echo '{"CreatedAt":"2020-01-01 10:00:00 +0000 UTC","ID":"c0ffee01","Labels":"a1b2c3=","Names":"old-runner-job","State":"exited"}'
    [[ -f $state/rm-old-node ]] || echo '{"CreatedAt":"2020-01-02 10:00:00 +0000 UTC","ID":"c0ffee02","Labels":"mayfly-node=testhost","Names":"old-node-job","State":"exited"}'
    echo '{"CreatedAt":"2099-01-01 10:00:00 +0000 UTC","ID":"c0ffee03","Labels":"a1b2c3=","Names":"recent-job","State":"exited"}'
    echo '{"CreatedAt":"2020-01-01 10:00:00 +0000 UTC","ID":"c0ffee04","Labels":"com.example.app=db","Names":"someone-elses","State":"exited"}' ;;
"network ls")
    echo '{"CreatedAt":"2020-01-01 10:00:00.1 +0000 UTC","ID":"n1","Labels":"a1b2c3=","Name":"github_network_0123","Driver":"bridge"}'
    echo '{"CreatedAt":"2020-01-01 10:00:00 +0000 UTC","ID":"n2","Labels":"","Name":"bridge","Driver":"bridge"}' ;;
"volume ls") echo '{"Driver":"local","Labels":"a1b2c3=","Name":"0123abcd"}' ;;
"rm --volumes")
    case "$3" in c0ffee01) touch "$state/rm-old-runner" ;; c0ffee02) touch "$state/rm-old-node" ;; esac
    echo "$3" ;;
"network rm") echo "$3" ;;
"volume prune") echo "Deleted Volumes:"; echo "0123abcd"; echo ""; echo "Total reclaimed space: 10MB" ;;
"image prune") echo "Total reclaimed space: 1GB" ;;
"builder prune") echo "Total reclaimed space: 0B" ;;
*) echo "fake docker: unsupported: $*" >&2; exit 1 ;;
esac
"#;

pub fn script(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write a fake");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A directory of fakes to put first on PATH.
pub fn fakes(dir: &Path, with_docker: bool) -> PathBuf {
    let bin = dir.join("fakebin");
    std::fs::create_dir_all(&bin).expect("fakebin");
    script(&bin.join("systemctl"), FAKE_SYSTEMCTL);
    if with_docker {
        script(&bin.join("docker"), FAKE_DOCKER);
    }
    bin
}
