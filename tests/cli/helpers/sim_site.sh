# sim_site.sh - the simulate tests' site (simulate.sh, simulate_local_bn.sh); source after
# setting $T (and with $CWTCTL, $CWT_SRC set by the test runner).

# sim_site: a synthetic PNG set in $T/png (make_pngs.py: 3 classes of 60 16x16 images, seed
# 11) and a site in $T/site (16x16x1 inputs, 3 classes, batch size 16) holding it, split
# 0.6/0.2/0.2 (seed 5). Sets S to the cwtctl arguments that name the site's config.
sim_site() {
    python3 "$CWT_SRC/tests/cli/helpers/make_pngs.py" "$T/png" 60 11 16
    "$CWTCTL" init --site-id sim --dir "$T/site" --input 16x16x1 --classes 3 >/dev/null
    sed -i -e 's/batch_size = [0-9]*;/batch_size = 16;/' "$T/site/roster.conf"
    S=(-c "$T/site/cwtd.conf")
    "$CWTCTL" "${S[@]}" ingest --val-fraction 0.2 --test-fraction 0.2 --seed 5 "$T/png" >/dev/null
}
