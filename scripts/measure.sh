# Sourced by the timing scripts. `measure LABEL COMMAND...` runs COMMAND under GNU time and prints
# its wall time, CPU time (user + system) and peak memory; with $results set, it also appends
# "LABEL wall cpu peak_mb" to that file. The command's stdout goes to ${measure_out:-/dev/null};
# $work holds time's report.
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
measure() {
    local label=$1; shift
    /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" "$@" > "${measure_out:-/dev/null}"
    local wall user sys rss cpu
    read -r wall user sys rss < "$work/time.txt"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')
    if [ -n "${results:-}" ]; then
        echo "$label $wall $cpu $((rss / 1024))" >> "$results"
    fi
    printf '  %-28s wall %7.2f s   cpu %7.2f s   peak %6d MB\n' "$label" "$wall" "$cpu" $((rss / 1024))
}
