"""The window's frame: the application, the main window that composes the panels, the project actions, the
recent-projects list and the engine's background import. The only room that imports the panels.
"""
