"""Tests of the feeds package: archives, VMcast feeds and downloads, with real files and servers."""
