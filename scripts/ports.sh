# Loopback port helpers for the scripts that start test servers (sourced, not run).
# Each script logs through its own `log` function.

# Whether something accepts TCP connections on 127.0.0.1:$1.
listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port nothing listens on, below the kernel's ephemeral range: ports in that range are handed out
# to other programs' outgoing connections and port-0 listeners, which could take ours between the
# check and the server's bind.
free_port() {
  local port low=32768 span
  if [ -r /proc/sys/net/ipv4/ip_local_port_range ]; then
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range || low=32768
  fi
  span=$((low - 15000))
  [ "$span" -gt 1000 ] || span=1000
  for _ in $(seq 1 50); do
    port=$((15000 + RANDOM % span))
    if ! listening "$port"; then
      echo "$port"
      return 0
    fi
  done
  log "no free loopback port found"
  return 1
}
