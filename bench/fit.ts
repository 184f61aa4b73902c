// How a measured cost grows with a size: the exponent k of a least-squares fit y ≈ c·x^k on log-log
// axes (k ≈ 0 constant, 1 linear, 2 quadratic). Used by the charts' scripts.

/** Slope of log y against log x over `points` ([x, y], all positive); NaN for fewer than two sizes. */
export function growthExponent(points: [number, number][]): number {
  const xs = points.map(([x]) => Math.log(x));
  const ys = points.map(([, y]) => Math.log(y));
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  const num = xs.reduce((s, x, i) => s + (x - mx) * (ys[i]! - my), 0);
  const den = xs.reduce((s, x) => s + (x - mx) ** 2, 0);
  return den === 0 ? NaN : num / den;
}
