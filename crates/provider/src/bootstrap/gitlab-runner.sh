#!/bin/bash
# mayfly GitLab runner bootstrap: cloud-init runs this once at first boot. It installs (or finds)
# gitlab-runner, runs one job with the runner authentication token (glrt-) of this machine's own
# runner record, and powers the machine off; mayfly deletes or recycles machines that are off and
# deletes the runner record after its machine. The token is in this file: never trace it (no
# `set -x`) and never print it.
#
# A template: mayfly fills in the @NAME@ placeholders (crates/provider/src/bootstrap/gitlab.rs).
# Functions are called from traps and from the blocks mayfly fills in, out of shellcheck's sight:
# shellcheck disable=SC2317
set -euo pipefail

readonly RUNNER_USER='@RUNNER_USER@'
# Where gitlab-runner is (already in the image) or goes (downloaded).
readonly GITLAB_RUNNER='@GITLAB_RUNNER@'
# Empty when gitlab-runner is already in the image: then nothing is downloaded.
readonly DOWNLOAD_URL='@DOWNLOAD_URL@'
# The pinned SHA-256 of the download; when empty, the release's own published list
# (release.sha256, fetched over HTTPS from the release) is what the download must match.
readonly RUNNER_SHA256='@RUNNER_SHA256@'
readonly CHECKSUMS_URL='@CHECKSUMS_URL@'
readonly CHECKSUM_NAME='@CHECKSUM_NAME@'
# The job's builds and caches live here, owned by RUNNER_USER.
readonly WORK_DIR='@WORK_DIR@'

# @COMMON@

# Prints the SHA-256 the download must have: the pinned one, or the one the release publishes.
expected_sha256() {
    if [[ -n $RUNNER_SHA256 ]]; then
        printf '%s\n' "$RUNNER_SHA256"
        return
    fi
    local list sum
    list=$(mktemp -t gitlab-runner-sha256.XXXXXX)
    if ! download "$CHECKSUMS_URL" "$list"; then
        rm -f "$list"
        log "could not download the release's checksums"
        return 1
    fi
    sum=$(awk -v name="$CHECKSUM_NAME" '$2 == name || $2 == "*" name { print $1; exit }' "$list")
    rm -f "$list"
    if [[ ! $sum =~ ^[0-9a-f]{64}$ ]]; then
        log "no checksum for ${CHECKSUM_NAME} in the release's checksums"
        return 1
    fi
    log "checking against the release's published checksum (pin it to trust no download host)"
    printf '%s\n' "$sum"
}

install_runner() {
    if [[ -z $DOWNLOAD_URL ]]; then
        if [[ ! -x $GITLAB_RUNNER ]]; then
            log "no gitlab-runner in the image at ${GITLAB_RUNNER}"
            exit 1
        fi
        log "using the gitlab-runner in the image at ${GITLAB_RUNNER}"
        return
    fi
    require curl sha256sum awk
    local binary expected
    binary=$(mktemp -t gitlab-runner.XXXXXX)
    log "downloading ${DOWNLOAD_URL}"
    if ! download "$DOWNLOAD_URL" "$binary"; then
        rm -f "$binary"
        log "could not download gitlab-runner"
        exit 1
    fi
    if ! expected=$(expected_sha256); then
        rm -f "$binary"
        exit 1
    fi
    verify_sha256 gitlab-runner "$expected" "$binary"
    install -D -m 0755 "$binary" "$GITLAB_RUNNER"
    rm -f "$binary"
}

prepare_work_dir() {
    mkdir -p "${WORK_DIR}/builds" "${WORK_DIR}/cache"
    chmod 0750 "$WORK_DIR"
    chown -R "${RUNNER_USER}:" "$WORK_DIR"
    if ! command -v git >/dev/null 2>&1; then
        log "warning: git is not installed: jobs cannot fetch their sources (install it in the setup script or the image)"
    fi
}

main() {
    log "starting"
    require useradd runuser getent
    ensure_user
    install_runner
    run_setup
    close_metadata
    prepare_work_dir
    cd "$WORK_DIR"
    start_runner
    log "gitlab-runner has exited"
}

main
