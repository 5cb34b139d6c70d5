// The client allow-list: which peers may talk to the listener at all.
// In: CIDR strings from the `allowed_clients` setting and a peer address from the socket.
// Out: allowed or not; IPv4-mapped IPv6 (::ffff:127.0.0.1) matches its IPv4 form.
// Fails: a malformed CIDR throws at start-up (config), never per connection.

import { BlockList, isIP } from 'node:net';

export function buildAllowList(cidrs: string[]): (address: string) => boolean {
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr = '', bitsText] = c.split('/');
    const family = isIP(addr);
    if (family === 0) throw new Error(`allowed_clients: "${c}" is not an IP address or CIDR`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    const max = family === 4 ? 32 : 128;
    const bits = bitsText === undefined ? max : Number(bitsText);
    if (!Number.isInteger(bits) || bits < 0 || bits > max) throw new Error(`allowed_clients: "${c}" has a bad prefix length`);
    list.addSubnet(addr, bits, type);
  }
  return (address: string) => {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    const a = mapped ? mapped[1]! : address;
    const family = isIP(a);
    if (family === 0) return false;
    return list.check(a, family === 4 ? 'ipv4' : 'ipv6');
  };
}

/** 127.0.0.0/8, ::1 (also IPv4-mapped, also in brackets) and the name localhost. */
export function isLoopbackAddress(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** True when every address of the CIDR is a loopback address (127.0.0.1/32, 127.0.0.0/8, ::1/128). */
export function isLoopbackNetwork(cidr: string): boolean {
  const [addr = '', bitsText] = cidr.split('/');
  const family = isIP(addr);
  const bits = bitsText === undefined ? (family === 6 ? 128 : 32) : Number(bitsText);
  if (family === 4) return bits >= 8 && isLoopbackAddress(addr);
  return family === 6 && bits === 128 && isLoopbackAddress(addr);
}
