/**
 * Port numbers written as text (AuthorizationPolicy `ports`, `destination.port`, PeerAuthentication
 * `portLevelMtls` keys). istiod reads them with Go's strconv.ParseUint(s, 10, 32): plain decimal digits only,
 * no sign, no spaces; leading zeros are fine.
 */

export const MAX_PORT = 65535;

/** The port number, or `undefined` when `text` is not an unsigned decimal integer in 0..65535. */
export function parsePortNumber(text: string): number | undefined {
  if (!/^[0-9]+$/.test(text)) return undefined;
  const n = Number.parseInt(text, 10);
  return n <= MAX_PORT ? n : undefined;
}
