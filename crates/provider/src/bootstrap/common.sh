# The part the bootstrap templates (runner.sh, gitlab-runner.sh) share: the log, the power-off
# whatever happens, the runner user, downloads and their checksum check, the operator's setup
# script, and the metadata service closed to jobs. mayfly puts it where a template says
# `# @COMMON@` (crates/provider/src/bootstrap/mod.rs); it is not a script of its own.
# RUNNER_USER is the template's.
# shellcheck shell=bash disable=SC2154,SC2317
readonly METADATA_ADDRESS='169.254.169.254'

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

# The checksum is the only thing that vouches for what runs here: no match, no run (the file
# goes). Arguments: what it is (for the log), the SHA-256 it must have, the file.
verify_sha256() {
    local what=$1 expected=$2 file=$3
    if ! printf '%s  %s\n' "$expected" "$file" | sha256sum -c - >/dev/null; then
        log "${what} checksum mismatch (expected sha256 ${expected}); refusing to run it"
        rm -f "$file"
        exit 1
    fi
    log "${what} checksum verified"
}

# @SETUP_SCRIPT@

run_setup() {
    if ! declare -F setup_script >/dev/null; then
        return
    fi
    local file
    file=$(mktemp -t mayfly-setup.XXXXXX)
    setup_script >"$file"
    chmod 0700 "$file"
    log "running the setup script"
    if [[ $(head -c 2 "$file") == '#!' ]]; then
        "$file"
    else
        bash "$file"
    fi
    rm -f "$file"
    log "setup script done"
}

# The machine's user data (this script, with its credential) is served to anything on the machine
# that asks the metadata service, and not every credential is spent by the time a job runs (a
# registration token or a glrt- token is not). Jobs run as RUNNER_USER: close the service to that
# user. Best effort.
close_metadata() {
    if command -v iptables >/dev/null 2>&1 &&
        iptables -w -I OUTPUT -d "$METADATA_ADDRESS" -m owner --uid-owner "$RUNNER_USER" -j REJECT 2>/dev/null; then
        log "metadata service closed to ${RUNNER_USER}"
    else
        log "warning: could not close the metadata service to ${RUNNER_USER}"
    fi
}
