/**
 * Money is integer nano-USD (1 USD = 1e9), carried as bigint: no binary floating point
 * ever touches an amount.
 */
export const NANO_PER_USD = 1_000_000_000n;

const DECIMAL = /^(\d{1,15})(?:\.(\d{1,9}))?$/;

/** Exact: "12.5", 12.5 → 12_500_000_000n. More than 9 decimals or a negative is an error. */
export function usdToNano(value: string | number): bigint {
  const text = typeof value === "number" ? numberToPlainString(value) : value.trim();
  const match = DECIMAL.exec(text);
  if (!match) throw new RangeError(`"${text}" is not a non-negative USD amount with at most 9 decimals`);
  const fraction = (match[2] ?? "").padEnd(9, "0");
  return BigInt(match[1]!) * NANO_PER_USD + BigInt(fraction);
}

/** A JS number's shortest round-trip decimal form ("0.1" for 0.1), never exponent notation. */
function numberToPlainString(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const s = String(n);
  if (!/e/i.test(s)) return s;
  return n.toFixed(20).replace(/\.?0+$/, "");
}

/** Display string with 6 decimals, rounded half-to-even: 4_512_300n → "0.004512". */
export function nanoToUsdString(nano: bigint): string {
  const negative = nano < 0n;
  const abs = negative ? -nano : nano;
  const micro = divideHalfEven(abs, 1000n);
  const whole = micro / 1_000_000n;
  const frac = (micro % 1_000_000n).toString().padStart(6, "0");
  return `${negative ? "-" : ""}${whole}.${frac}`;
}

export function divideHalfEven(numerator: bigint, denominator: bigint): bigint {
  const quotient = numerator / denominator;
  const remainder = numerator % denominator;
  const twice = remainder * 2n;
  if (twice > denominator || (twice === denominator && quotient % 2n === 1n)) return quotient + 1n;
  return quotient;
}

/** JSON form of an amount: an integer while exact in a double (≤ 2^53), else a decimal string. */
export function nanoJson(nano: bigint): number | string {
  return nano <= BigInt(Number.MAX_SAFE_INTEGER) && nano >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(nano) : nano.toString();
}

/**
 * Exact decimal USD, no rounding, trailing zeros dropped (at least two decimals kept):
 * 150_000_000n → "0.15", 1_562_500_000n → "1.5625", 1n → "0.000000001". For prices, where a
 * 6-decimal display string would hide part of the price; `usdToNano` reads it back exactly.
 */
export function nanoToExactUsdString(nano: bigint): string {
  const negative = nano < 0n;
  const abs = negative ? -nano : nano;
  const whole = abs / NANO_PER_USD;
  const fraction = (abs % NANO_PER_USD).toString().padStart(9, "0").replace(/0+$/, "").padEnd(2, "0");
  return `${negative ? "-" : ""}${whole}.${fraction}`;
}
