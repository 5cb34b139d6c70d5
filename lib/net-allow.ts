// The client allow-list: which peers may talk to the listener at all.
// In: CIDR strings from the `allowed_clients` setting and a peer address from the socket.
// Out: allowed or not; IPv4-mapped IPv6 (::ffff:127.0.0.1) matches its IPv4 form.
// Fails: a malformed CIDR throws at start-up (config), never per connection.

import { BlockList, isIP } from 'node:net';

/** An address or CIDR as the allow-list takes it, or why not (the config check uses the same rule). */
export function parseCidr(c: string): { addr: string; bits: number; type: 'ipv4' | 'ipv6' } | string {
  const [addr = '', bitsText, extra] = c.split('/');
  const family = isIP(addr);
  if (family === 0 || extra !== undefined) return 'expected an address or CIDR such as 127.0.0.0/8';
  const max = family === 4 ? 32 : 128;
  const bits = bitsText === undefined ? max : /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : NaN;
  if (!(bits >= 0 && bits <= max)) return `prefix length /${bitsText} is not within 0..${max}`;
  return { addr, bits, type: family === 4 ? 'ipv4' : 'ipv6' };
}

export function buildAllowList(cidrs: string[]): (address: string) => boolean {
  const list = new BlockList();
  for (const c of cidrs) {
    const net = parseCidr(c);
    if (typeof net === 'string') throw new Error(`allowed_clients: "${c}": ${net}`);
    list.addSubnet(net.addr, net.bits, net.type);
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
