# The report (DESIGN.md section 3.11): hnseg's own page, results/report/index.html (self-contained), with every table
# as CSV and every figure as PNG, SVG and the CSV it plots. The same files are declared with report() so that
# `snakemake --report` builds Snakemake's report of the run too. What it reads comes from report_files (common.smk).


rule report:
    input:
        unpack(report_inputs),
    output:
        html=report(
            "results/report/index.html",
            caption="../report/index.rst",
            category="Report",
            labels={"name": "hnseg report"},
        ),
        provenance="results/report/provenance.json",
        main_test=report(
            "results/report/tables/main_test.csv",
            caption="../report/main_table.rst",
            category="Tables",
            labels={"table": "main, test"},
        ),
        main_val=report(
            "results/report/tables/main_val.csv",
            caption="../report/main_table.rst",
            category="Tables",
            labels={"table": "main, validation"},
        ),
        claims=report(
            "results/report/tables/claims.csv",
            caption="../report/claims.rst",
            category="Tables",
            labels={"table": "claims tested"},
        ),
        timings=report(
            "results/report/tables/timings.csv",
            caption="../report/timings.rst",
            category="Tables",
            labels={"table": "timings"},
        ),
        registration_qc=report(
            "results/report/tables/registration_qc.csv",
            caption="../report/registration_qc.rst",
            category="Tables",
            labels={"table": "registration QC"},
        ),
        cohort_subsets=report(
            "results/report/tables/cohort_subsets.csv",
            caption="../report/cohort.rst",
            category="Tables",
            labels={"table": "cohort: subsets"},
        ),
        cohort_targets=report(
            "results/report/tables/cohort_targets.csv",
            caption="../report/cohort.rst",
            category="Tables",
            labels={"table": "cohort: targets"},
        ),
        cohort_left_out=report(
            "results/report/tables/cohort_left_out.csv",
            caption="../report/cohort.rst",
            category="Tables",
            labels={"table": "cohort: left out"},
        ),
        cohort_methods=report(
            "results/report/tables/cohort_methods.csv",
            caption="../report/cohort.rst",
            category="Tables",
            labels={"table": "cohort: methods"},
        ),
        checkpoints=report(
            "results/report/tables/checkpoints.csv",
            caption="../report/checkpoints.rst",
            category="Tables",
            labels={"table": "checkpoints"},
        ),
        figure1_test=report(
            "results/report/figures/figure1_test.png",
            caption="../report/figure1.rst",
            category="Figures",
            labels={"figure": "Figure 1, test"},
        ),
        figure1_test_svg="results/report/figures/figure1_test.svg",
        figure1_test_csv="results/report/figures/figure1_test.csv",
        figure1_val=report(
            "results/report/figures/figure1_val.png",
            caption="../report/figure1.rst",
            category="Figures",
            labels={"figure": "Figure 1, validation"},
        ),
        figure1_val_svg="results/report/figures/figure1_val.svg",
        figure1_val_csv="results/report/figures/figure1_val.csv",
        figure2=report(
            "results/report/figures/figure2_case.png",
            caption="../report/figure2.rst",
            category="Figures",
            labels={"figure": "Figure 2, the median case"},
        ),
        figure2_svg="results/report/figures/figure2_case.svg",
        figure2_csv="results/report/figures/figure2_case.csv",
        figure2_selection_csv="results/report/figures/figure2_case_selection.csv",
    params:
        files=report_files,
        options=report_options(),
        config=config,
        code=script_code("report.py"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=15,
    log:
        "logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    script:
        "../scripts/report.py"
