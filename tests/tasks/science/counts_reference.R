# Reference tables for tasks/science/counts.py (filterByExpr, TMM, voom, lowess) and the
# voom + limma table that tests/tasks/science/test_counts.py compares against.
# Run from this directory:  cd tests/tasks/science && Rscript counts_reference.R
# Written with R 4.2.2 (Mersenne-Twister, Inversion, Rejection), limma 3.54.1, edgeR 3.40.2.
# It simulates the count datasets itself (set.seed), so a rerun rewrites identical files;
# all files it writes are named counts_*. R's tables are genes x samples; Python's are the
# transpose.
suppressMessages({library(limma); library(edgeR)})
stopifnot(packageVersion("limma") == "3.54.1", packageVersion("edgeR") == "3.40.2")
RNGkind("Mersenne-Twister", "Inversion", "Rejection")

num <- function(x, digits = 17) sprintf(paste0("%.", digits, "g"), x)
write_tsv <- function(df, name) write.table(df, name, sep = "\t", quote = FALSE, row.names = FALSE)

# Negative-binomial counts, genes x samples. `lib` is each sample's expected library size;
# `mu0` the genes' baseline abundances (relative); `lfc` a genes x samples log2 effect.
simulate <- function(mu0, lib, lfc, dispersion) {
  p <- mu0 / sum(mu0)
  mu <- outer(p, lib) * 2^lfc
  counts <- matrix(rnbinom(length(mu), mu = mu, size = 1 / dispersion), nrow(mu))
  rownames(counts) <- sprintf("g%04d", seq_len(nrow(mu)))
  counts
}

abundance <- function(n_genes, n_low, n_zero) {
  mu0 <- exp(rnorm(n_genes, log(60), 1.6))
  low <- sample(n_genes, n_low + n_zero)
  mu0[low[seq_len(n_low)]] <- runif(n_low, 0.05, 1.5)  # mostly dropped by the filter
  mu0[low[n_low + seq_len(n_zero)]] <- 0                  # all-zero genes
  mu0
}

# The whole workflow on one dataset, and the tables of each step.
reference <- function(name, counts, design, coef, voom_every) {
  write_tsv(data.frame(gene = rownames(counts), counts, check.names = FALSE), paste0("counts_", name, ".tsv"))
  write_tsv(data.frame(sample = colnames(counts), design, check.names = FALSE), paste0("counts_", name, "_design.tsv"))
  y <- DGEList(counts)
  all_tmm <- calcNormFactors(y)$samples$norm.factors  # TMM of the unfiltered counts
  keep <- filterByExpr(y, design)
  writeLines(rownames(counts)[keep], paste0("counts_", name, "_kept.txt"))
  y <- y[keep, , keep.lib.sizes = FALSE]
  y <- calcNormFactors(y)
  write_tsv(data.frame(sample = colnames(counts), tmm_all = num(all_tmm), lib_size = num(y$samples$lib.size),
                       norm_factors = num(y$samples$norm.factors)), paste0("counts_", name, "_norm.tsv"))
  v <- voom(y, design)
  genes <- rownames(v$E)[seq(1, nrow(v$E), by = voom_every)]
  long <- expand.grid(sample = colnames(v$E), gene = genes, stringsAsFactors = FALSE)
  long$E <- num(v$E[cbind(long$gene, long$sample)])
  long$weight <- num(v$weights[cbind(match(long$gene, rownames(v$E)), match(long$sample, colnames(v$E)))])
  write_tsv(long[, c("gene", "sample", "E", "weight")], paste0("counts_", name, "_voom.tsv"))
  cat(name, ": ", nrow(counts), " genes, ", sum(keep), " kept; norm factors ",
      paste(round(y$samples$norm.factors, 4), collapse = " "), "\n", sep = "")
  if (is.null(coef)) return(invisible())
  # 12 significant digits: the test's tolerance is 1e-6.
  tt <- topTable(eBayes(lmFit(v, design)), coef = coef, number = Inf, sort.by = "none")
  cols <- c("logFC", "AveExpr", "t", "P.Value", "adj.P.Val", "B")
  out <- data.frame(gene = rownames(tt), lapply(tt[cols], num, digits = 12), check.names = FALSE)
  write_tsv(out, paste0("counts_", name, "_toptable.tsv"))
  cat("  ", sum(tt$adj.P.Val < 0.05), " at adj.P < 0.05\n", sep = "")
}

# 1. main: 12 samples, 6 vs 6 in 3 batches of 2 + 2, ~ batch + group.
set.seed(20261201)
n_genes <- 1200
group <- factor(rep(c("ctrl", "trt", "trt", "ctrl"), 3), levels = c("ctrl", "trt"))
batch <- factor(rep(c("b1", "b2", "b3"), each = 4))
lib <- round(3e5 * runif(12, 0.6, 1.6))
mu0 <- abundance(n_genes, n_low = 180, n_zero = 15)
lfc <- matrix(0, n_genes, 12)
lfc[] <- rnorm(n_genes * 3, 0, 0.3)[(as.integer(batch)[col(lfc)] - 1) * n_genes + row(lfc)]  # batch effect
de <- sample(which(mu0 > 5), 50)
lfc[de, group == "trt"] <- lfc[de, group == "trt"] + c(runif(35, 1, 2.5), -runif(15, 1, 2.5))
counts <- simulate(mu0, lib, lfc, exp(rnorm(n_genes, log(0.08), 0.4)))
colnames(counts) <- sprintf("s%02d", 1:12)
design <- model.matrix(~ batch + group)
reference("main", counts, design, coef = "grouptrt", voom_every = 30)

# 2. group: 7 samples, 3 vs 4, no covariate, ~ group.
set.seed(20261202)
n_genes <- 400
group <- factor(c("ctrl", "trt", "ctrl", "trt", "trt", "ctrl", "trt"), levels = c("ctrl", "trt"))
mu0 <- abundance(n_genes, n_low = 60, n_zero = 6)
lfc <- matrix(0, n_genes, 7)
de <- sample(which(mu0 > 5), 20)
lfc[de, group == "trt"] <- c(runif(10, 1, 2), -runif(10, 1, 2))
counts <- simulate(mu0, round(2e5 * runif(7, 0.5, 1.5)), lfc, 0.1)
colnames(counts) <- sprintf("s%02d", 1:7)
reference("group", counts, model.matrix(~ group), coef = "grouptrt", voom_every = 15)

# 3. tmm: expected library sizes 1 to 5 apart, and ten dominant genes 8-fold up in two
# samples (one of them then the largest library, 20 times the smallest), so that the
# reference column (the upper quartile nearest their mean) is neither the first nor the
# largest library, and another reference gives other factors.
set.seed(20261203)
n_genes <- 300
group <- factor(rep(c("ctrl", "trt"), each = 3), levels = c("ctrl", "trt"))
mu0 <- abundance(n_genes, n_low = 30, n_zero = 3)
lfc <- matrix(0, n_genes, 6)
top <- order(mu0, decreasing = TRUE)[1:10]
lfc[top, c(2, 5)] <- 3  # a few dominant genes take a share of two libraries
lfc[sample(which(mu0 > 5), 30), group == "trt"] <- 1.5
counts <- simulate(mu0, c(1e5, 5e5, 2e5, 3e5, 1.2e5, 4e5), lfc, 0.05)
colnames(counts) <- sprintf("s%02d", 1:6)
design <- model.matrix(~ group)
reference("tmm", counts, design, coef = NULL, voom_every = 10)
x <- counts[rowSums(counts) > 0, ]
f75 <- apply(x, 2, quantile, probs = 0.75) / colSums(counts)
ref <- which.min(abs(f75 - mean(f75)))
other <- calcNormFactors(DGEList(counts), refColumn = 1)$samples$norm.factors
cat("tmm: reference column", ref, "of libraries", paste(colSums(counts), collapse = " "),
    "; with refColumn = 1 the factors would differ by up to",
    signif(max(abs(other / calcNormFactors(DGEList(counts))$samples$norm.factors - 1)), 3), "\n")

# 4. sparse: most upper quartiles are zero, so calcNormFactors takes the column with the
# largest sum of square-root counts as the reference. Only the TMM factors are kept.
set.seed(20261204)
sparse <- matrix(0, 200, 6, dimnames = list(sprintf("g%04d", 1:200), sprintf("s%02d", 1:6)))
for (j in 1:6) {
  nonzero <- if (j %in% c(2, 5)) 150 else 20  # four columns mostly zero, two dense
  sparse[sample(200, nonzero), j] <- rnbinom(nonzero, mu = 40, size = 2) + 1
}
write_tsv(data.frame(gene = rownames(sparse), sparse, check.names = FALSE), "counts_sparse.tsv")
write_tsv(data.frame(sample = colnames(sparse), tmm_all = num(calcNormFactors(DGEList(sparse))$samples$norm.factors)),
          "counts_sparse_norm.tsv")
f75 <- apply(sparse[rowSums(sparse) > 0, ], 2, quantile, probs = 0.75) / colSums(sparse)
cat("sparse: upper quartiles", f75 * colSums(sparse), "; reference column", which.max(colSums(sqrt(sparse))),
    "where the nearest upper quartile to their mean would be", which.min(abs(f75 - mean(f75))), "\n")

# 5. lowess: random x, tied x, delta skipping in play or not, robustness steps, outliers.
# Inputs are rounded to multiples of 2^-10 first: their decimals are then exact and short,
# where R's own parser (R_strtod) can misround a 17-digit decimal by an ulp.
set.seed(20261205)
cases <- list()
params <- list()
on_grid <- function(x) round(x * 1024) / 1024
add <- function(case, x, y, f, iter, delta = NA) {
  l <- if (is.na(delta)) lowess(x, y, f = f, iter = iter) else lowess(x, y, f = f, iter = iter, delta = delta)
  stopifnot(identical(l$x, sort(x)))
  params[[case]] <<- data.frame(case = case, f = num(f), iter = iter, delta = num(delta))
  cases[[case]] <<- data.frame(case = case, x = num(x), y = num(y), fit = num(l$y))
}
x <- on_grid(runif(120, 0, 10))
y <- on_grid(sin(x) + rnorm(120, 0, 0.3))
add("random_nodelta", x, y, f = 2 / 3, iter = 3, delta = 0)
add("random_wide_delta", x, y, f = 0.3, iter = 3, delta = 1)  # a tenth of the range
x <- on_grid(rnorm(250))
add("default_delta", x, on_grid(x^2 + rnorm(250, 0, 0.5)), f = 0.5, iter = 3)  # 0.01 * range
x <- round(runif(150, 0, 10)) / 2  # 21 distinct values: many ties
y <- on_grid(cos(x) + rnorm(150, 0, 0.2))
add("ties", x, y, f = 0.3, iter = 3)
add("ties_nodelta", x, y, f = 0.2, iter = 3, delta = 0)
x <- on_grid(sort(runif(80, 0, 4)))
y <- on_grid(2 * x + rnorm(80, 0, 0.1))
y[c(10, 11, 40, 70)] <- on_grid(y[c(10, 11, 40, 70)] + c(8, -6, 10, -9))  # outliers the robust steps reject
add("outliers", rev(x), rev(y), f = 0.25, iter = 4)
add("outliers_iter0", x, y, f = 0.25, iter = 0)
add("small_span", x, y, f = 0.01, iter = 3)  # two points per local fit
add("line", as.numeric(1:30), 3 * (1:30) + 1, f = 0.5, iter = 3)  # residuals of rounding only
add("three", c(2, 1, 3), c(1, 5, 2), f = 2 / 3, iter = 3)
write_tsv(do.call(rbind, params), "counts_lowess_cases.tsv")
write_tsv(do.call(rbind, cases), "counts_lowess.tsv")
cat("lowess:", length(cases), "cases\n")
