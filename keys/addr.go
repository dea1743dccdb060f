package keys

import "net/netip"

// AddrBucket is the client address as keygate's limits and failure audit
// count it: IPv4 addresses as they are, IPv6 ones by their /64, since one
// host commonly owns a whole /64 and could otherwise spread its attempts
// over 2^64 addresses. Anything unparsable is its own bucket.
func AddrBucket(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
