CREATE TABLE `pool_concurrency_samples` (
	`pool` text NOT NULL,
	`shard` integer NOT NULL,
	`at` integer NOT NULL,
	`depth` integer NOT NULL,
	`in_flight` integer NOT NULL,
	`desired` integer NOT NULL,
	`utilization` real,
	`processing_rate` real NOT NULL,
	PRIMARY KEY(`pool`, `at`, `shard`)
) WITHOUT ROWID;
--> statement-breakpoint
CREATE TABLE `pool_scaling_decisions` (
	`id` text PRIMARY KEY NOT NULL,
	`pool` text NOT NULL,
	`shard` integer NOT NULL,
	`at` integer NOT NULL,
	`from_concurrency` integer NOT NULL,
	`to_concurrency` integer NOT NULL,
	`reason` text NOT NULL,
	`depth` integer NOT NULL,
	`in_flight` integer NOT NULL,
	`utilization` real,
	`processing_rate` real NOT NULL
);
--> statement-breakpoint
CREATE INDEX `pool_scaling_decisions_pool_at` ON `pool_scaling_decisions` (`pool`,`at`);