# The part the bootstrap templates (runner.sh, gitlab-runner.sh) share: the log, the power-off
# whatever happens, the runner user, downloads. mayfly puts it where a template says `# @COMMON@`
# (crates/provider/src/bootstrap/mod.rs); it is not a script of its own. RUNNER_USER is the
# template's.
# shellcheck shell=bash disable=SC2154,SC2317
log() {
    printf 'mayfly-bootstrap: %s\n' "$*" >&2
    logger -t mayfly-bootstrap -- "$*" 2>/dev/null || true
}

# Whatever happens (the job is done, no job came, the download failed, the checksum did not
# match, the setup script failed), the machine powers off: a machine that never started its
# runner must not run, and bill, forever.
finish() {
    local status=$?
    trap - EXIT
    log "done (exit status ${status}); powering off"
    sync || true
    shutdown -h now || poweroff || poweroff -f
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

require() {
    local tool
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            log "required tool missing from the image: ${tool}"
            exit 1
        fi
    done
}

# The runner and its jobs run as this unprivileged user. It gets no sudo and no docker group
# (both are root in all but name): an operator who wants either grants it in the setup script.
ensure_user() {
    if id -u "$RUNNER_USER" >/dev/null 2>&1; then
        log "user ${RUNNER_USER} exists"
    else
        useradd --create-home --shell /bin/bash "$RUNNER_USER"
        log "user ${RUNNER_USER} created"
    fi
}

runner_home() {
    getent passwd "$RUNNER_USER" | cut -d: -f6
}

# Runs a command as the runner user, with that user's home: jobs write caches under $HOME.
as_runner() {
    local home
    home=$(runner_home)
    runuser -u "$RUNNER_USER" -- env HOME="$home" USER="$RUNNER_USER" LOGNAME="$RUNNER_USER" "$@"
}

# @START_RUNNER@

download() {
    local url=$1 out=$2 attempt
    for attempt in 1 2 3 4 5; do
        if curl --fail --silent --show-error --location --connect-timeout 10 --max-time 300 \
            --retry 3 --retry-delay 2 --output "$out" "$url"; then
            return 0
        fi
        log "download attempt ${attempt} of ${url} failed"
        sleep $((attempt * 3))
    done
    return 1
}
