"""Input pipeline vs training throughput (ResNet-20, Fashion-MNIST, batch 128).

The pipeline must not be the bottleneck: its images/s (decode, augment,
normalise, batch) should be >= 3x what a training step consumes.

On the 2-core reference VM, back-to-back identical epochs alternate between
two speeds (about 250 and 500 images/s), so training is timed over several
rounds and the fastest is kept (the harder comparison for the pipeline); the
slowest is reported too.
"""

import time

import keras

from epsd_tf import data, models, optim

BATCH_SIZE = 128


def run(quick: bool = False) -> dict:
    splits = data.load("fashion_mnist", batch_size=BATCH_SIZE, seed=0)
    pipeline_batches = 50 if quick else 200
    train_steps = 10 if quick else 40

    # Warm the cache (the first pass decodes the IDX files), then time.
    data.measure_throughput(splits.train, num_batches=5)
    pipeline_ips = data.measure_throughput(splits.train, num_batches=pipeline_batches)

    model = models.build("resnet20", splits.info.image_shape, splits.info.num_classes)
    model.compile(optimizer=optim.make_optimizer(learning_rate=0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # Train on cached in-memory batches so that only the training step is timed.
    batches = splits.train.take(train_steps).cache()
    model.fit(batches.take(3), epochs=1, verbose=0)  # trace + warm up
    model.fit(batches, epochs=1, verbose=0)  # fill the cache
    rates = []
    for _ in range(2 if quick else 4):
        start = time.perf_counter()
        model.fit(batches, epochs=1, verbose=0)
        rates.append(train_steps * BATCH_SIZE / (time.perf_counter() - start))
    train_ips = max(rates)
    return {
        "pipeline_images_per_second": pipeline_ips,
        "training_images_per_second": train_ips,
        "training_images_per_second_slowest_round": min(rates),
        "pipeline_over_training": pipeline_ips / train_ips,
        "target_pipeline_over_training": 3.0,
    }
