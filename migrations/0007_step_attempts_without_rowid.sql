-- Hand-written (drizzle cannot say WITHOUT ROWID): step_attempts keyed by its primary key alone,
-- so an attempt costs two D1 rows written (the row and its started_at index entry) instead of
-- three (the row, the key's separate index, started_at). The rows carry over unchanged.
CREATE TABLE `step_attempts_keyed` (
	`run_id` text NOT NULL,
	`step_index` integer NOT NULL,
	`attempt` integer NOT NULL,
	`step` text NOT NULL,
	`step_type` text NOT NULL,
	`customer_id` text NOT NULL,
	`project_id` text NOT NULL,
	`run_type` text,
	`pool` text NOT NULL,
	`status` text NOT NULL,
	`failure_type` text,
	`failure_message` text,
	`started_at` integer NOT NULL,
	`finished_at` integer,
	`duration_ms` integer,
	PRIMARY KEY(`run_id`, `step_index`, `attempt`)
) WITHOUT ROWID;
--> statement-breakpoint
INSERT INTO `step_attempts_keyed` SELECT `run_id`, `step_index`, `attempt`, `step`, `step_type`, `customer_id`, `project_id`, `run_type`, `pool`, `status`, `failure_type`, `failure_message`, `started_at`, `finished_at`, `duration_ms` FROM `step_attempts`;
--> statement-breakpoint
DROP TABLE `step_attempts`;
--> statement-breakpoint
ALTER TABLE `step_attempts_keyed` RENAME TO `step_attempts`;
--> statement-breakpoint
CREATE INDEX `step_attempts_started` ON `step_attempts` (`started_at`);
