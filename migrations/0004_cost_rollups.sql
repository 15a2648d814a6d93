CREATE TABLE `cost_rollups` (
	`hour` integer NOT NULL,
	`customer_id` text NOT NULL,
	`run_id` text NOT NULL,
	`model` text DEFAULT '' NOT NULL,
	`part` integer DEFAULT 0 NOT NULL,
	`project_id` text NOT NULL,
	`run_type` text,
	`pool` text NOT NULL,
	`input_tokens` integer DEFAULT 0 NOT NULL,
	`cached_input_tokens` integer DEFAULT 0 NOT NULL,
	`output_tokens` integer DEFAULT 0 NOT NULL,
	`reasoning_tokens` integer DEFAULT 0 NOT NULL,
	`ai_nano_usd` integer DEFAULT 0 NOT NULL,
	`infra_nano_usd` integer DEFAULT 0 NOT NULL,
	`nano_usd` integer DEFAULT 0 NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`lines` text DEFAULT '[]' NOT NULL,
	`price_versions` text DEFAULT '' NOT NULL,
	`version` integer NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`hour`, `customer_id`, `run_id`, `model`, `part`)
) WITHOUT ROWID;
--> statement-breakpoint
CREATE INDEX `cost_rollups_customer_hour` ON `cost_rollups` (`customer_id`,`hour`);--> statement-breakpoint
CREATE TABLE `dead_events` (
	`id` text PRIMARY KEY NOT NULL,
	`kind` text NOT NULL,
	`body` text NOT NULL,
	`received_at` integer NOT NULL,
	`applied_at` integer,
	`error` text
);
--> statement-breakpoint
CREATE INDEX `dead_events_received` ON `dead_events` (`received_at`);--> statement-breakpoint
-- Hand-written: WITHOUT ROWID above (drizzle cannot say it), and the history carried over
-- here: each run's cost events summed per UTC hour and model (infrastructure under model ''),
-- one priced line per meter and model, amounts as exact integers. `version` 0: a snapshot sent
-- by a live run replaces these rows.
INSERT OR IGNORE INTO `cost_rollups` (`hour`, `customer_id`, `run_id`, `model`, `part`, `project_id`, `run_type`, `pool`,
	`input_tokens`, `cached_input_tokens`, `output_tokens`, `reasoning_tokens`, `ai_nano_usd`, `infra_nano_usd`, `nano_usd`,
	`attempts`, `lines`, `price_versions`, `version`, `updated_at`)
SELECT `hour`, `customer_id`, `run_id`, `row_model`, 0, MIN(`project_id`), MIN(`run_type`), MIN(`pool`),
	SUM(CASE WHEN `meter` = 'input_tokens' THEN `q` ELSE 0 END),
	SUM(CASE WHEN `meter` = 'cached_input_tokens' THEN `q` ELSE 0 END),
	SUM(CASE WHEN `meter` = 'output_tokens' THEN `q` ELSE 0 END),
	SUM(CASE WHEN `meter` = 'reasoning_tokens' THEN `q` ELSE 0 END),
	SUM(CASE WHEN `meter` IN ('input_tokens', 'cached_input_tokens', 'output_tokens', 'reasoning_tokens') THEN `n` ELSE 0 END),
	SUM(CASE WHEN `meter` IN ('input_tokens', 'cached_input_tokens', 'output_tokens', 'reasoning_tokens') THEN 0 ELSE `n` END),
	SUM(`n`),
	MAX(`attempts`),
	json_group_array(json_object('meter', `meter`, 'model', `model`, 'quantity', CAST(`q` AS TEXT), 'nanoUsd', CAST(`n` AS TEXT),
		'estimated', json(CASE WHEN `est` = 1 THEN 'true' ELSE 'false' END))),
	group_concat(DISTINCT `versions`),
	0,
	CAST(strftime('%s', 'now') AS INTEGER) * 1000
FROM (
	SELECT (`at` / 3600000) * 3600000 AS `hour`, `customer_id`, `run_id`,
		CASE WHEN `meter` IN ('input_tokens', 'cached_input_tokens', 'output_tokens', 'reasoning_tokens') THEN COALESCE(`model`, '') ELSE '' END AS `row_model`,
		`meter`, `model`, MIN(`project_id`) AS `project_id`, MIN(`run_type`) AS `run_type`, MIN(`pool`) AS `pool`,
		SUM(`quantity`) AS `q`, SUM(`nano_usd`) AS `n`, MAX(`estimated`) AS `est`,
		COUNT(DISTINCT `step` || ':' || `attempt`) AS `attempts`, group_concat(DISTINCT `price_version`) AS `versions`
	FROM `cost_events`
	WHERE typeof(`nano_usd`) = 'integer'
	GROUP BY `hour`, `customer_id`, `run_id`, `row_model`, `meter`, `model`
)
GROUP BY `hour`, `customer_id`, `run_id`, `row_model`;
--> statement-breakpoint
DROP TABLE `cost_events`;--> statement-breakpoint
ALTER TABLE `customers` ADD `ledger_checked_at` integer;