//! Criterion benchmarks of the VM on the programs in `benches/hog/` (the same programs
//! `hogpipe bench hog` and `benches/hog-vs-node.sh` run). `cargo bench -p hog-lang`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hog_lang::bench::{self, Kind, BATCH};
use hog_lang::vm::{CollectingHost, Outcome, Vm};
use hog_lang::Value;
use std::hint::black_box;

fn programs(c: &mut Criterion) {
    let events = bench::events(BATCH);
    for p in bench::PROGRAMS {
        let chunk = bench::compile(p).expect("benchmark programs compile");
        let mut group = c.benchmark_group("hog");
        match p.kind {
            Kind::Whole => {
                group.sample_size(10);
                group.bench_function(p.name, |b| {
                    let mut vm = Vm::new(Value::Null);
                    let mut host = CollectingHost::default();
                    b.iter(|| {
                        host.lines.clear();
                        let out = vm.run(chunk.clone(), &mut host).expect("runs");
                        assert!(matches!(out, Outcome::Finished(_)));
                    })
                });
            }
            Kind::PerEvent => {
                group.throughput(Throughput::Elements(BATCH as u64));
                group.bench_function(format!("{} ({BATCH} events)", p.name), |b| {
                    let mut vm = Vm::new(Value::Null);
                    let mut host = CollectingHost::default();
                    b.iter_batched(
                        || events.iter().map(bench::event_globals).collect::<Vec<_>>(),
                        |globals| {
                            let mut kept = Vec::with_capacity(globals.len());
                            for g in globals {
                                vm.reset(g);
                                if let Ok(Outcome::Finished(v)) = vm.run(chunk.clone(), &mut host) {
                                    kept.push(v);
                                }
                            }
                            black_box(kept)
                        },
                        BatchSize::LargeInput,
                    )
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, programs);
criterion_main!(benches);
