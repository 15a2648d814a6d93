ALTER TABLE `runs` ADD `due_at` integer;--> statement-breakpoint
CREATE INDEX `runs_due` ON `runs` (`due_at`);--> statement-breakpoint
ALTER TABLE `runs` DROP COLUMN `checked_at`;--> statement-breakpoint
-- Hand-written: runs unfinished at the upgrade are due for one look at once; each one's object
-- then sets its own deadline.
UPDATE `runs` SET `due_at` = `updated_at` WHERE `status` IN ('queued', 'running', 'waiting');
