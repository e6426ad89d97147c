#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Lint greps over Sources/ for what STYLE.md forbids; lists every offending line and exits 1 if any.
#   - Date() / Date.now outside Sources/SigilCore/WallClock.swift (one injected clock);
#   - try! / fatalError( outside test code, unless the line says `// precondition:` why;
#   - import COpenSSL outside Sources/SigilCrypto (the only code that touches OpenSSL);
#   - print( in library targets (Sources/Sigil*): they log, only the executable prints;
#   - imports against the module table (docs/architecture.md): each library target imports only the modules
#     listed for it below, so dependencies point one way (the agent never links the store, Core no NIO…);
#   - formatting: `swift format lint --strict` with .swift-format (4 spaces, 120 columns) over all Swift code.
# Whole-line comments (// and ///) are skipped; a trailing comment on a code line is not.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$SIGIL_ROOT"

failures=0

# forbid TITLE REGEX FILTER_REGEX FILE...: report lines matching REGEX (extended) in FILEs, except
# whole-line comments and lines matching FILTER_REGEX (empty: none excepted).
forbid() {
    local title=$1 regex=$2 except=$3
    shift 3
    (($# > 0)) || return 0
    local hits
    hits="$(grep -nHE -- "$regex" "$@" 2>/dev/null |
        grep -vE '^[^:]+:[0-9]+:[[:space:]]*//' |
        { if [[ -n $except ]]; then grep -vE -- "$except"; else cat; fi; } || true)"
    if [[ -n $hits ]]; then
        printf '%s:\n' "$title"
        printf '%s\n' "$hits" | sed 's/^/    /'
        failures=$((failures + 1))
    fi
}

# Every Swift file under Sources/ but protoc's output (scripts/gen-protos); sources_except PREFIX lists those
# whose path does not start with PREFIX.
mapfile -t all_sources < <(find Sources -name '*.swift' -type f -not -path 'Sources/*/Generated/*' | sort)

sources_except() {
    local path
    for path in "${all_sources[@]}"; do
        case $path in
        "$1"*) ;;
        *) printf '%s\n' "$path" ;;
        esac
    done
}

mapfile -t not_wallclock < <(sources_except Sources/SigilCore/WallClock.swift)
mapfile -t not_test_support < <(sources_except Sources/SigilTestSupport/)
mapfile -t not_crypto < <(sources_except Sources/SigilCrypto/)
mapfile -t library_sources < <(printf '%s\n' "${all_sources[@]}" | grep -E '^Sources/Sigil[^/]*/' || true)

forbid "Date() or Date.now outside Sources/SigilCore/WallClock.swift (use the injected WallClock)" \
    '(^|[^A-Za-z0-9_])Date\(\)|(^|[^A-Za-z0-9_])Date\.now([^A-Za-z0-9_]|$)' '' "${not_wallclock[@]}"
forbid "try! outside tests (add '// precondition: why' if it is a documented precondition)" \
    'try!' '// precondition:' "${not_test_support[@]}"
forbid "fatalError( outside tests (add '// precondition: why' if it is a documented precondition)" \
    '(^|[^A-Za-z0-9_])fatalError\(' '// precondition:' "${not_test_support[@]}"
forbid "import COpenSSL outside Sources/SigilCrypto" \
    '(^|[[:space:]])import[[:space:]]+COpenSSL([^A-Za-z0-9_]|$)' '' "${not_crypto[@]}"
forbid "print( in a library target (log through swift-log instead)" \
    '(^|[^A-Za-z0-9_.])print\(' '' "${library_sources[@]}"

# The module table: what each library target may import (Swift's own Foundation, Synchronization, Dispatch
# and Testing aside). A target not listed here may import anything.
declare -A allowed_imports=(
    [SigilCrypto]="COpenSSL"
    [SigilCore]="SigilCrypto Logging"
    [SigilFiles]=""
    [SigilTokens]="SigilCore SigilCrypto SigilFiles JWTKit AsyncHTTPClient NIOCore NIOSSL NIOFoundationCompat"
    [SigilAPIModels]=""
    [SigilStore]="SigilCore SigilCrypto SigilFiles GRDB PostgresNIO NIOCore NIOPosix NIOSSL Logging"
    [SigilServer]="SigilCore SigilCrypto SigilFiles SigilTokens SigilAPIModels SigilStore Hummingbird HummingbirdCore
        HTTPTypes NIOCore NIOPosix NIOSSL NIOHTTPTypes NIOFoundationCompat ServiceLifecycle Logging Metrics Prometheus AsyncHTTPClient
        SigilIstioGRPC GRPCCore GRPCProtobuf GRPCNIOTransportHTTP2 NIOHTTP2 NIOHPACK SwiftProtobuf"
    [SigilAgent]="SigilCore SigilCrypto SigilFiles SigilAPIModels SigilAgentGRPC NIOCore
        GRPCCore GRPCNIOTransportHTTP2 NIOHTTP2 NIOHPACK SwiftProtobuf ServiceLifecycle Logging"
    [SigilIstioGRPC]="SwiftProtobuf GRPCCore GRPCProtobuf"
    [SigilTestSupport]="SigilCore SigilCrypto SigilStore Testing"
)
for target in "${!allowed_imports[@]}"; do
    allowed=" Foundation Synchronization Dispatch ${allowed_imports[$target]//$'\n'/ } "
    hits=""
    while IFS= read -r hit; do
        module="$(sed -E 's/.*import[[:space:]]+([A-Za-z0-9_]+).*/\1/' <<<"${hit#*:*:}")"
        [[ $allowed == *" $module "* ]] || hits+="    $hit (not in $target's row of the module table)"$'\n'
    done < <(grep -nHE '^[[:space:]]*(@testable[[:space:]]+|@_exported[[:space:]]+|internal[[:space:]]+|public[[:space:]]+)?import[[:space:]]+' \
        "Sources/$target"/*.swift 2>/dev/null || true)
    if [[ -n $hits ]]; then
        printf 'import outside the module table (docs/architecture.md):\n%s' "$hits"
        failures=$((failures + 1))
    fi
done

# Formatting (STYLE.md): the toolchain's swift-format over all Swift code but protoc's output; fix with the
# command in the message.
mapfile -t format_paths < <(find Package.swift Sources Tests Benchmarks -name '*.swift' -type f -not -path 'Sources/*/Generated/*' | sort)
if ! lint="$(swift format lint --strict --parallel --configuration .swift-format "${format_paths[@]}" 2>&1)"; then
    printf 'swift format lint (fix: swift format --in-place --configuration .swift-format FILE, for each file below):\n'
    printf '%s\n' "$lint" | head -n 40 | sed 's/^/    /'
    failures=$((failures + 1))
fi

if ((failures > 0)); then
    printf 'scripts/check.sh: %d rule(s) broken, see above\n' "$failures" >&2
    exit 1
fi
printf 'scripts/check.sh: %d Swift files clean\n' "${#all_sources[@]}"
