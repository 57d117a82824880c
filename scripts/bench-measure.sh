# shellcheck shell=bash
# The measurements of scripts/bench, sourced by it (not run on their own):
# each runs one host-side tool against the server scripts/bench started,
# in its namespace ($ns), and sets vals=(figure value ...) and returns 0,
# or prints why it failed and returns 1. They use scripts/bench's globals
# ($out, $impl, $stack_ip, the time limits and counts) and its helpers
# (bounded, warn).
# shellcheck disable=SC2034,SC2154 # scripts/bench's globals, set and read there

vals=()
out=""

show_err() {
  warn "$1 failed:"
  sed 's/^/  | /' "$out" "$out.err" >&2
}

measure_down() {
  local t=$1 n t0 t1
  # shellcheck disable=SC2016 # expanded by the inner bash
  bounded "$t_bulk" "$out" bash -c \
    't0=$EPOCHREALTIME; n=$(echo "$1" | nc -N "$2" 1919 | wc -c); t1=$EPOCHREALTIME; echo "$n $t0 $t1"' \
    bash "$bytes" "$stack_ip" || { show_err "$t"; return 1; }
  read -r n t0 t1 <"$out"
  [ "$n" = "$bytes" ] || { echo "received $n bytes of $bytes" >>"$out.err"; show_err "$t"; return 1; }
  vals=("$t" "$(awk -v b="$bytes" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", b / 1e6 / (z - a) }')")
}

measure_up() {
  local t=$1 n secs
  # bench-client.py upload: 1 MiB writes, then a half-close, done when the
  # discard service's FIN comes (it has read everything). Not `head -c |
  # nc`: a pipe and 16 KiB writes capped the host side near 850 MB/s.
  bounded "$t_bulk" "$out" /usr/bin/python3 "$client" upload "$stack_ip" 9 "$bytes" "$t_bulk" ||
    { show_err "$t"; return 1; }
  read -r n secs <"$out"
  vals=("$t" "$(awk -v b="$n" -v s="$secs" 'BEGIN { printf "%.1f", b / 1e6 / s }')")
}

measure_ping() {
  local sent got
  bounded "$((t_ping + 5))" "$out" ping -c "$pings" -i 0.002 -w "$t_ping" "$stack_ip" || true
  # Every reply's time=, in µs, duplicates left out. The summary line is not
  # read: it can end in ", pipe N" when replies overlap.
  grep -v 'DUP!' "$out" | sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' | sort -g >"$out.rtt"
  [ -s "$out.rtt" ] || { show_err ping; return 1; }
  read -r sent got < <(sed -n 's/^\([0-9]*\) packets transmitted, \([0-9]*\) received.*/\1 \2/p' "$out")
  [ "$sent" = "$got" ] || warn "ping: $got of $sent replies"
  # Nearest-rank percentiles; mdev as ping computes it.
  # shellcheck disable=SC2207 # the awk prints words without blanks
  vals=($(awk '{ v[NR] = $1 * 1000; s += v[NR]; q += v[NR] * v[NR] }
    END {
      n = NR; avg = s / n; var = q / n - avg * avg
      printf "ping_p50 %.1f ping_p99 %.1f ", v[int((n * 50 + 99) / 100)], v[int((n * 99 + 99) / 100)]
      printf "ping_min %.1f ping_avg %.1f ping_max %.1f ping_mdev %.1f\n", v[1], avg, v[n], sqrt(var > 0 ? var : 0)
    }' "$out.rtt"))
}

measure_echo() {
  local t=$1 cc=${1##*_} n secs pause
  bounded "$((t_echo + 5))" "$out" /usr/bin/python3 "$client" echo "$stack_ip" 7 "$echo_bytes" "$t_echo" "$cc" ||
    { show_err "$t"; return 1; }
  read -r n secs pause <"$out"
  vals=("$t" "$(awk -v s="$secs" 'BEGIN { printf "%.2f", s }')" "${t}_pause" "$(awk -v s="$pause" 'BEGIN { printf "%.2f", s }')")
}

# measure_conn FIGURE CLIENTS: --conns connections in all from CLIENTS processes.
measure_conn() {
  local n secs
  bounded "$((t_conn + 5))" "$out" "$native_client" connrate "$stack_ip" 7 "$conns" "$t_conn" "$2" ||
    { show_err "$1"; return 1; }
  read -r n secs <"$out"
  vals=("$1" "$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')")
}

measure_rr() {
  local n secs p50 p99
  bounded "$((t_rr + 5))" "$out" "$native_client" rr "$stack_ip" 7 "$rtts" "$t_rr" ||
    { show_err rr_latency; return 1; }
  read -r n secs p50 p99 <"$out"
  vals=(rr_latency "$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.1f", s / n * 1e6 }')" rr_p50 "$p50" rr_p99 "$p99")
}

# vm_rss PID: the process's resident set, KiB.
vm_rss() {
  awk '/^VmRSS:/ { print $2; found = 1 } END { exit !found }' "/proc/$1/status"
}

# rss_settled PID: its VmRSS once two reads 0.5 s apart agree within 0.5%
# (at most 30 s; then the last read, with a warning).
rss_settled() {
  local prev cur i
  prev=$(vm_rss "$1") || return 1
  for ((i = 0; i < 60; i++)); do
    sleep 0.5
    cur=$(vm_rss "$1") || return 1
    if awk -v a="$prev" -v b="$cur" 'BEGIN { d = a - b; exit !((d < 0 ? -d : d) * 200 <= b) }'; then
      echo "$cur"
      return 0
    fi
    prev=$cur
  done
  warn "  $impl: the server's RSS still moved after 30 s ($prev, then $cur KiB)"
  echo "$cur"
}

measure_idle() {
  local pid before after n secs est rc=0 i release="$tmp/release-$daemon_seq"
  before=$(rss_settled "$daemon_pid") || { warn "idle_rss: cannot read the server's VmRSS"; return 1; }
  ip netns exec "$ns" timeout -k 5 "$((t_idle + 60))" /usr/bin/python3 "$client" idle "$stack_ip" 7 \
    "$idle_conns" "$((t_idle + 50))" "$release" >"$out" 2>"$out.err" </dev/null &
  pid=$!
  # The client prints one line once every connection is open and checked.
  for ((i = 0; i < t_idle * 10; i++)); do
    [ ! -s "$out" ] || break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -s "$out" ]; then
    read -r n secs <"$out"
    est=$(ip netns exec "$ns" ss -Htn state established "( dst $stack_ip and dport = :7 )" | wc -l)
    after=$(rss_settled "$daemon_pid") || after=""
  fi
  touch "$release"
  wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ] || [ -z "${n:-}" ]; then show_err idle_rss; return 1; fi
  [ -n "$after" ] || { warn "idle_rss: cannot read the server's VmRSS"; return 1; }
  [ "$est" -ge "$n" ] || { echo "only $est of $n connections ESTABLISHED on the host (ss)" >>"$out.err"; show_err idle_rss; return 1; }
  warn "  $impl: VmRSS $before KiB before, $after KiB with $n connections held (opened in $secs s; ss: $est ESTABLISHED)"
  vals=(idle_rss "$(awk -v a="$before" -v b="$after" -v n="$n" 'BEGIN { printf "%.2f", (b - a) / n }')")
}

# tun_stat NAME: a counter of tun0 (/sys/class/net/tun0/statistics/NAME).
tun_stat() {
  ip netns exec "$ns" cat "/sys/class/net/tun0/statistics/$1"
}

# tun_vals TEST: vals from tun_ceiling's "PACKETS BYTES SECONDS" in $out.
tun_vals() {
  local n b secs
  read -r n b secs <"$out"
  vals=("${1}_pps" "$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')"
    "$1" "$(awk -v b="$b" -v s="$secs" 'BEGIN { printf "%.1f", b / 1e6 / s }')")
}

# measure_tun_write TEST MTU: tun_ceiling writes; nft drops at tun0's ingress.
measure_tun_write() {
  local t=$1 mtu=$2 total dropped
  ip netns exec "$ns" nft -f - <<NFT || { warn "$t: cannot add the nft drop rule"; return 1; }
table netdev bench_tun {
  chain ingress {
    type filter hook ingress device "tun0" priority 0; policy accept;
    counter drop
  }
}
NFT
  bounded "$t_tun" "$out" "$tun_bin" write --mtu "$mtu" --secs "$tun_secs" || { show_err "$t"; return 1; }
  total=$(sed -n 's/^tun_ceiling: \([0-9]*\) packets in all$/\1/p' "$out.err")
  dropped=$(ip netns exec "$ns" nft list table netdev bench_tun | sed -n 's/.*counter packets \([0-9]*\) .*/\1/p')
  if [ -z "$total" ] || [ "$dropped" != "$total" ]; then
    echo "wrote ${total:-?} packets; the host's ingress saw ${dropped:-?}" >>"$out.err"
    show_err "$t"
    return 1
  fi
  tun_vals "$t"
}

# measure_tun_read TEST MTU: the host floods; tun_ceiling reads.
measure_tun_read() {
  local t=$1 mtu=$2 reader rc=0 i flood_secs dropped
  ip netns exec "$ns" "$tun_bin" read --mtu "$mtu" --secs "$tun_secs" >"$out" 2>"$out.err" </dev/null &
  reader=$!
  for ((i = 0; i < 100; i++)); do
    grep -qs '^tun_ceiling: owns' "$out.err" && break
    kill -0 "$reader" 2>/dev/null || break
    sleep 0.1
  done
  # Longer than the reader's warm-up and count, so it never runs dry.
  flood_secs=$((tun_secs + 2))
  ip netns exec "$ns" timeout -k 5 "$((flood_secs + 10))" /usr/bin/python3 "$client" udpflood "$stack_ip" 9 \
    "$((mtu - 28))" "$flood_secs" >"$out.flood" 2>&1 </dev/null || rc=$?
  [ "$rc" -eq 0 ] || { kill -TERM "$reader" 2>/dev/null; echo "udpflood failed: $(cat "$out.flood")" >>"$out.err"; }
  wait "$reader" || rc=$?
  [ "$rc" -eq 0 ] || { show_err "$t"; return 1; }
  dropped=$(tun_stat tx_dropped)
  [ "$dropped" -gt 0 ] ||
    warn "  $t: tun0 dropped nothing: the flood did not outrun the reader, so this is the sender's pace"
  tun_vals "$t"
}

