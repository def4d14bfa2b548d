# Reference tables for designs beyond `~ group`: covariates, pairing, noise-like data.
# Run from the repository root with R 4.2.2 and limma 3.54.1 (Debian: r-base-core, r-bioc-limma):
#   Rscript tests/tasks/science/design_reference.R
# It writes the inputs it makes (seeded) and limma's tables under tests/tasks/science/design/;
# tests/tasks/science/test_design.py compares the Python statistics with them (CI needs no R).
suppressMessages(library(limma))
out <- "tests/tasks/science/design"
dir.create(out, showWarnings = FALSE)
write_tsv <- function(x, name) {
  write.table(x, file.path(out, name), sep = "\t", quote = FALSE, row.names = FALSE)
}
digits <- function(x) sprintf("%.15g", x)

# limma's table for the last design column, and the prior eBayes found.
reference <- function(e, design, name) {
  fit <- eBayes(lmFit(e, design))
  coef <- ncol(design)
  tt <- topTable(fit, coef = coef, number = Inf, sort.by = "none")
  # Every fifth gene and the 25 strongest: the statistics need every gene, the check not.
  tt <- tt[sort(unique(c(seq(1, nrow(tt), by = 5), order(tt$P.Value)[1:25]))), ]
  table <- data.frame(probeset = rownames(tt), lapply(tt[, c("logFC", "AveExpr", "t",
    "P.Value", "adj.P.Val", "B")], digits), check.names = FALSE)
  write_tsv(table, paste0(name, ".limma.tsv"))
  data.frame(case = name, s2_prior = digits(fit$s2.prior), df_prior = digits(fit$df.prior),
             var_prior = digits(fit$var.prior[coef]))
}

# golub with two made-up covariates (neither is in the published data): a batch of three
# levels drawn within each phenotype, so it is not confounded, and a numeric age.
golub <- read.delim("input/golub_all_aml.tsv", check.names = FALSE)
e_golub <- t(as.matrix(golub[, -1]))
colnames(e_golub) <- paste0("sample_", seq_len(ncol(e_golub)))
set.seed(20261202)
phenotype <- golub$phenotype
batch <- character(length(phenotype))
for (p in unique(phenotype)) {
  idx <- which(phenotype == p)
  batch[idx] <- sample(rep(c("b1", "b2", "b3"), length.out = length(idx)))
}
age <- round(runif(length(phenotype), 20, 70))
sheet <- data.frame(sample = colnames(e_golub), phenotype = phenotype, batch = batch, age = age)
write_tsv(sheet, "golub_sheet.tsv")
group <- factor(phenotype, levels = c("ALL", "AML"))
priors <- list(
  reference(e_golub, model.matrix(~ factor(batch) + age + group), "golub_batch_age"),
  reference(e_golub, model.matrix(~ factor(batch) + group), "golub_batch")
)
# removeBatchEffect without the phenotype (the default design, an intercept): what
# --adjust-features gives the classifiers.
adjusted <- removeBatchEffect(e_golub, batch = factor(batch), covariates = age)
keep <- seq(1, nrow(adjusted), by = 30)
write_tsv(data.frame(probeset = rownames(adjusted)[keep], apply(adjusted[keep, ], 2, digits),
                     check.names = FALSE), "golub_batch_age.adjusted.tsv")

# Paired samples: 8 patients before and after a treatment, 400 genes, a patient effect and
# 20 genes changed by the treatment; the pairing enters as a blocking factor.
set.seed(7)
patients <- 8
patient <- factor(rep(sprintf("p%d", seq_len(patients)), each = 2))
treatment <- factor(rep(c("before", "after"), patients), levels = c("before", "after"))
e_pair <- matrix(rnorm(400 * 2 * patients, sd = 0.5), nrow = 400) +
  matrix(rnorm(400 * patients, sd = 1), nrow = 400)[, as.integer(patient)] + 7
e_pair[1:20, treatment == "after"] <- e_pair[1:20, treatment == "after"] + 1
e_pair <- round(e_pair, 3)
rownames(e_pair) <- sprintf("g%03d", 1:400)
colnames(e_pair) <- sprintf("s%02d", seq_len(2 * patients))
write_tsv(data.frame(probeset = rownames(e_pair), e_pair, check.names = FALSE), "paired.tsv")
write_tsv(data.frame(sample = colnames(e_pair), treatment = treatment, patient = patient),
          "paired_sheet.tsv")
priors[[3]] <- reference(e_pair, model.matrix(~ patient + treatment), "paired")

# Noise: 40 x 1000 Gaussian values, 20 vs 20, two genes shifted by 1.2 SD. fitFDist finds
# no spread beyond chance here (df.prior = Inf) and tmixture clips its estimates.
set.seed(2)
e_noise <- round(matrix(rnorm(1000 * 40), nrow = 1000), 2)
noise_group <- factor(rep(c("a", "b"), each = 20))
e_noise[1:2, noise_group == "b"] <- e_noise[1:2, noise_group == "b"] + 1.2
rownames(e_noise) <- sprintf("n%04d", 1:1000)
colnames(e_noise) <- sprintf("s%02d", 1:40)
write_tsv(data.frame(probeset = rownames(e_noise), e_noise, check.names = FALSE), "noise.tsv")
priors[[4]] <- reference(e_noise, model.matrix(~ noise_group), "noise")

# golub with its labels permuted: the other branch permutation nulls hit.
set.seed(3)
permuted <- factor(sample(phenotype), levels = c("ALL", "AML"))
write_tsv(data.frame(sample = colnames(e_golub), phenotype = as.character(permuted)),
          "golub_permuted_sheet.tsv")
priors[[5]] <- reference(e_golub, model.matrix(~ permuted), "golub_permuted")

write_tsv(do.call(rbind, priors), "priors.tsv")
