"""Print the constants of the AVX-512 float64 sum exp (vexpd_sum in xentc/_xentc_exp.h).

    python scripts/fit_exp_table.py        (needs mpmath; a developer's tool, not a dependency)

The table tab[i] = 2^((i - 8) / 16), i = 0..15, correctly rounded, and P of
degree 4 with exp(r) ~ 1 + r + r^2 P(r) for |r| <= ln 2 / 32, fitted for
minimal relative error by least squares on Chebyshev nodes, reweighted by
Lawson's rule (|error|) until the weights settle.  Prints the constants as C
hex floats and the relative error of 1 + r + r^2 P(r) with them rounded to
double, in units of 2^-53.
"""
import mpmath as mp

mp.mp.prec = 128
A = mp.log(2) / 32
NODES, DEG, ROUNDS = 400, 4, 60


def rel_error(c, r):
    p = sum(c[k] * r**k for k in range(DEG + 1))
    return (1 + r + r * r * p) / mp.exp(r) - 1


def fit():
    nodes = [A * mp.cos(mp.pi * (i + 0.5) / NODES) for i in range(NODES)]
    w = [mp.mpf(1)] * NODES
    for _ in range(ROUNDS):
        a, b = mp.matrix(NODES, DEG + 1), mp.matrix(NODES, 1)
        for i, r in enumerate(nodes):
            s = mp.sqrt(w[i]) / mp.exp(r)
            for k in range(DEG + 1):
                a[i, k] = s * r**(k + 2)
            b[i] = s * (mp.exp(r) - 1 - r)
        sol = mp.lu_solve(a.T * a, a.T * b)
        c = [sol[k] for k in range(DEG + 1)]
        e = [abs(rel_error(c, r)) for r in nodes]
        total = sum(wi * ei for wi, ei in zip(w, e))
        w = [wi * ei / total for wi, ei in zip(w, e)]
    return [float(x) for x in c]


def main():
    tab = [float(mp.power(2, mp.mpf(i - 8) / 16)) for i in range(16)]
    print("tab:", ", ".join(x.hex() for x in tab))
    c = fit()
    print("P (r^0 .. r^4):", ", ".join(x.hex() for x in c))
    grid = [A * mp.mpf(i) / 5000 for i in range(-5000, 5001)]
    worst = max(abs(rel_error([mp.mpf(x) for x in c], r)) for r in grid)
    print(f"max relative error of 1 + r + r^2 P(r): {float(worst / mp.mpf(2)**-53):.3f} x 2^-53")


if __name__ == "__main__":
    main()
