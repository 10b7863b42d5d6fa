# shellcheck shell=bash
# procs: the processes the harness starts, one record each in $PROCS/NAME.json, the format
# test/e2e/internal/harness reads (Process): name, pid, argv (as run, nsenter included, so that
# a test restarts it unchanged), program (what /proc/PID/cmdline starts with while it is ours),
# log, netns. The teardown stops a process only while its record says it is ours.

# record NAME PID PROGRAM NETNS ARGV...: writes NAME's record, whole or not at all. Each word
# of ARGV goes in as the value of an --arg a0, a1, ... (jq would read a word like -c as its own
# option).
record() {
	local name=$1 pid=$2 program=$3 netns=$4 i=0 a args=(); shift 4
	for a in "$@"; do args+=(--arg "a$i" "$a"); i=$((i + 1)); done
	jq -n --arg name "$name" --argjson pid "$pid" --arg program "$program" --arg log "$LOGS/$name.log" \
		--arg netns "$netns" --argjson n $# "${args[@]}" '{name: $name, pid: $pid,
		argv: [range(0; $n) as $i | $ARGS.named["a\($i)"]], program: $program, log: $log}
		+ (if $netns == "" then {} else {netns: $netns} end)' >"$PROCS/.$name.json.tmp"
	mv "$PROCS/.$name.json.tmp" "$PROCS/$name.json"
}

# start NAME CMD...: runs CMD in a session of its own, its output in $LOGS/NAME.log. With NS_PID
# set, in the network and mount namespaces of that process (NS_NAME: its network namespace).
# PROGRAM: what the process runs once it has exec'd, if not CMD's first word.
start() {
	local name=$1; shift
	local argv=("$@")
	if [ -n "${NS_PID:-}" ]; then argv=(nsenter --target "$NS_PID" --mount --net -- "$@"); fi
	setsid "${argv[@]}" >"$LOGS/$name.log" 2>&1 </dev/null &
	record "$name" $! "${PROGRAM:-$1}" "${NS_NAME:-}" "${argv[@]}"
	echo "    $name: pid $!"
}

# ours NAME: the PID of NAME's record, if that process is still the program it started.
ours() {
	[ -f "$PROCS/$1.json" ] || return 1
	local pid prog
	read -r pid prog < <(jq -r '"\(.pid) \(.program)"' "$PROCS/$1.json")
	kill -0 "$pid" 2>/dev/null || return 1
	[ "$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -1)" = "$prog" ] || return 1
	echo "$pid"
}
alive() { ours "$1" >/dev/null; }

# alive_or_log NAME: fails showing the log's tail if NAME died.
alive_or_log() {
	alive "$1" && return 0
	echo "e2e: $1 is not running; the end of $LOGS/$1.log:" >&2
	tail -30 "$LOGS/$1.log" >&2 || true
	return 1
}

# stop_pids NAME...: SIGTERM (STOP_SIGNAL) to each that is still ours, all at once; SIGKILL to
# any still alive after 20 s. Their records go.
stop_pids() {
	local name pid names=() pids=() sig=${STOP_SIGNAL:-TERM} t0
	t0=$(date +%s.%N)
	for name in "$@"; do
		[ -f "$PROCS/$name.json" ] || continue
		if pid=$(ours "$name"); then
			kill -"$sig" "$pid" 2>/dev/null || true
			names+=("$name")
			pids+=("$pid")
		else
			rm -f "$PROCS/$name.json"
		fi
	done
	[ ${#pids[@]} -gt 0 ] || return 0
	wait_gone 20 "${pids[@]}" || true
	local i
	for i in "${!pids[@]}"; do
		if kill -0 "${pids[$i]}" 2>/dev/null; then
			echo "    ${names[$i]} (pid ${pids[$i]}) ignored SIG$sig: SIGKILL"
			kill -KILL "${pids[$i]}" 2>/dev/null || true
		fi
		rm -f "$PROCS/${names[$i]}.json"
	done
	echo "    $([ "$sig" = KILL ] && echo killed || echo stopped) ${names[*]} in $(since "$t0")s"
}
# kill_pids NAME...: SIGKILL to each, then wait until they are gone.
kill_pids() { STOP_SIGNAL=KILL stop_pids "$@"; }

# wait_gone SECONDS PID...: until none of the PIDs is alive.
wait_gone() {
	local secs=$1 pid left _; shift
	for _ in $(seq 1 $((secs * 10))); do
		left=0
		for pid in "$@"; do kill -0 "$pid" 2>/dev/null && left=1; done
		[ $left = 1 ] || return 0
		sleep 0.1
	done
	return 1
}
